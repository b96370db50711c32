//! The report in a real headless Chromium, driven over W3C WebDriver (fantoccini and
//! Debian's `chromium-driver`): thumbnails render, the page's counts equal the Parquet's,
//! a click and a keyboard shortcut record corrections that survive a reload, the download
//! button saves `corrections.csv`, and one training step runs from it.
//!
//! Needs `chromium` and `chromedriver` on PATH (`.ci/run` installs the Debian packages when
//! they are missing and sets FACEBATCH_REQUIRE_BROWSER=1, so there the test cannot be
//! skipped). Without them, and without that variable, it says so and passes.
//!
//! Why fantoccini: WebDriver is a W3C standard, so the same test drives chromedriver or
//! geckodriver (the page must work in Chromium and Firefox), and it talks plain HTTP to a
//! local driver, which keeps TLS out of the test build.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::StringArray;
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Chromium and its driver, or `None` (the test is skipped unless required).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = on_path("chromium").or_else(|| on_path("chromium-browser"));
    let found = chromium.zip(on_path("chromedriver"));
    if found.is_none() {
        assert!(
            std::env::var_os("FACEBATCH_REQUIRE_BROWSER").is_none(),
            "FACEBATCH_REQUIRE_BROWSER is set but chromium and chromedriver are not on PATH \
             (apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "skipped: chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        );
    }
    found
}

struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_driver(chromedriver: &Path) -> (Driver, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} did not start: {:?}",
            chromedriver.display(),
            child.try_wait()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Driver(child), format!("http://127.0.0.1:{port}"))
}

async fn js(c: &Client, script: &str) -> serde_json::Value {
    c.execute(script, vec![]).await.unwrap()
}

async fn wait_until(c: &Client, script: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while js(c, script).await != json!(true) {
        assert!(Instant::now() < deadline, "timed out waiting for: {script}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn the_report_renders_and_its_corrections_train_a_model() {
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    jpeg_corpus(&photos, 8, 2, &sample_face());
    let out = tmp.path().join("results.parquet");
    let o = run(facebatch()
        .arg("classify")
        .arg(repo().join("data/samples"))
        .arg(&photos)
        .arg("--out")
        .arg(&out)
        .arg("--model")
        .arg(default_model()));
    assert!(matches!(o.status.code(), Some(0 | 1)));
    let report = tmp.path().join("report");
    assert!(
        run(facebatch()
            .arg("report")
            .arg(&out)
            .arg("--out")
            .arg(&report))
        .status
        .success()
    );
    let mut ok = 0u64;
    for b in read_parquet(&out).0 {
        let s = col::<StringArray>(&b, "status");
        ok += (0..b.num_rows()).filter(|&i| s.value(i) == "ok").count() as u64;
    }
    let downloads = tmp.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let (_driver, url) = start_driver(&chromedriver);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let csv = runtime.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1300,1000"],
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                },
            }),
        );
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a chromedriver session");
        let page = format!("file://{}", report.join("index.html").display());

        // The summary's counts are the Parquet's.
        c.goto(&page).await.unwrap();
        wait_until(&c, "return document.body.dataset.tab === 'summary'").await;
        let ok_on_page = js(&c, "return [...document.querySelectorAll('table')][0].innerText").await;
        assert!(
            ok_on_page.as_str().unwrap().contains(&format!("ok\t{ok}")),
            "rows by status on the page: {ok_on_page}"
        );

        // One card per sampled face, every thumbnail decoded and drawn.
        c.goto(&format!("{page}#label%3Afemale")).await.unwrap();
        wait_until(&c, "return document.querySelectorAll('#grid .card').length > 0").await;
        let cards = js(&c, "return document.querySelectorAll('#grid .card').length").await;
        let expected = js(&c, "return window.FACEBATCH_REPORT.galleries['label:female'].length").await;
        assert_eq!(cards, expected);
        wait_until(
            &c,
            "return [...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)",
        )
        .await;
        let rect = js(
            &c,
            "const r = document.querySelector('#grid img.face').getBoundingClientRect(); \
             return [r.left, r.top, r.width, r.height].map(Math.round)",
        )
        .await;
        let shot = image::load_from_memory(&c.screenshot().await.unwrap())
            .unwrap()
            .to_rgb8();
        let [x, y, w, h] = [0, 1, 2, 3].map(|k| rect[k].as_u64().unwrap() as u32);
        let mut lum: Vec<u32> = Vec::new();
        for yy in y..(y + h).min(shot.height()) {
            for xx in x..(x + w).min(shot.width()) {
                let p = shot.get_pixel(xx, yy);
                lum.push(p[0] as u32 + p[1] as u32 + p[2] as u32);
            }
        }
        let (lo, hi) = (lum.iter().min().unwrap(), lum.iter().max().unwrap());
        assert!(hi - lo > 150, "the face thumbnail is drawn, not blank ({lo}..{hi})");

        // A click and a keyboard shortcut record corrections.
        c.find(Locator::Css("#grid .card .buttons button:nth-child(2)"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        js(&c, "document.querySelectorAll('#grid .card')[1].focus(); return true").await;
        c.active_element()
            .await
            .unwrap()
            .send_keys("1")
            .await
            .unwrap();
        // Label the rest of this gallery and the male one by clicks, alternating.
        for tab in ["label:female", "label:male"] {
            js(&c, &format!("window.facebatchReport.show('{tab}'); return true")).await;
            js(
                &c,
                "const n = document.querySelectorAll('#grid .card').length; \
                 for (let i = 2; i < n; i++) { \
                   document.querySelectorAll('#grid .card')[i].querySelectorAll('.buttons button')[i % 2].click(); \
                 } return true",
            )
            .await;
        }
        let count = js(&c, "return Object.keys(window.facebatchReport.choices()).length").await;
        assert!(count.as_u64().unwrap() >= ok.min(4), "{count}");
        // They survive a reload (localStorage).
        c.refresh().await.unwrap();
        wait_until(&c, "return document.getElementById('correction-count') !== null").await;
        let shown = js(&c, "return document.getElementById('correction-count').textContent").await;
        assert_eq!(shown, json!(format!("{count} corrections")));
        // Download.
        c.find(Locator::Id("download"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let file = downloads.join("corrections.csv");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !file.is_file() {
            assert!(Instant::now() < deadline, "corrections.csv was not downloaded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c.close().await.unwrap();
        std::fs::read_to_string(&file).unwrap()
    });
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "path,label,photo,face_index,box,model_label,model_confidence,already_aligned"
    );
    assert!(lines.len() >= 5, "{csv}");
    for l in &lines[1..] {
        assert!(l.starts_with("faces/") && l.ends_with(",true"), "{l}");
    }
    // The corrections train a model: the CSV's paths are relative to the report folder.
    std::fs::write(report.join("corrections.csv"), &csv).unwrap();
    if cfg!(feature = "train") {
        let o = train_from_corrections(&report.join("corrections.csv"), &tmp.path().join("model"));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
}
