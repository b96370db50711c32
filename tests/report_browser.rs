//! The report in a real headless Chromium, driven over W3C WebDriver (Debian's
//! `chromium-driver`): thumbnails render, the page's counts equal the Parquet's,
//! a click and a keyboard shortcut record corrections that survive a reload, the download
//! button saves `corrections.csv`, and one training step runs from it.
//!
//! Needs `chromium` and `chromedriver` on PATH (`.ci/run` installs the Debian packages when
//! they are missing and sets FACEBATCH_REQUIRE_BROWSER=1, so there the test cannot be
//! skipped). Without them, and without that variable, it says so and passes.
//!
//! Why WebDriver: it is a W3C standard, so the same test drives chromedriver or
//! geckodriver (the page must work in Chromium and Firefox). The client below is the
//! handful of W3C endpoints the test needs, JSON over plain HTTP with ureq (already a
//! dependency). It replaced fantoccini, whose HTTP stack (hyper, tokio's `net`, url/icu
//! with syn's `fold`) changed the features of crates shared with the run build, so that
//! `cargo test` recompiled most of the build after `cargo run` (issue 16, item 9).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::{Float32Array, RecordBatch, StringArray};
use common::*;
use serde_json::{Value, json};

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

/// A W3C WebDriver session: the endpoints this test uses, synchronously.
struct Session {
    agent: ureq::Agent,
    base: String,
}

impl Session {
    fn new(driver: &str, capabilities: Value) -> Session {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut s = Session {
            agent,
            base: driver.to_string(),
        };
        let created = s.post(
            "/session",
            json!({"capabilities": {"alwaysMatch": capabilities}}),
        );
        let id = created["sessionId"].as_str().expect("a session id");
        s.base = format!("{driver}/session/{id}");
        s
    }

    /// The response's `value`; a WebDriver error fails the test with its message.
    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let response = match body {
            Some(body) => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body.to_string()),
            None if method == "DELETE" => self.agent.delete(&url).call(),
            None => self.agent.get(&url).call(),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status();
        let text = response.body_mut().read_to_string().unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"));
        assert!(
            status.is_success(),
            "{method} {url}: {status}: {}",
            v["value"]
        );
        v["value"].clone()
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.send("POST", path, Some(body))
    }

    fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url }));
    }

    fn refresh(&self) {
        self.post("/refresh", json!({}));
    }

    fn js(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
    }

    fn wait_until(&self, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.js(script) != json!(true) {
            assert!(Instant::now() < deadline, "timed out waiting for: {script}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The element `selector` (CSS) finds first.
    fn find(&self, selector: &str) -> String {
        let e = self.post(
            "/element",
            json!({"using": "css selector", "value": selector}),
        );
        element_id(&e)
    }

    fn click(&self, element: &str) {
        self.post(&format!("/element/{element}/click"), json!({}));
    }

    fn type_into_active(&self, text: &str) {
        let active = element_id(&self.send("GET", "/element/active", None));
        self.post(&format!("/element/{active}/value"), json!({ "text": text }));
    }

    fn screenshot(&self) -> image::RgbImage {
        let b64 = self.send("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().expect("base64 PNG"));
        image::load_from_memory(&png).unwrap().to_rgb8()
    }

    /// The browser's console since the last call (chromedriver's log endpoint, with
    /// `goog:loggingPrefs` set): uncaught exceptions and `console.error` are `SEVERE`.
    fn browser_log(&self) -> Vec<Value> {
        let v = self.post("/se/log", json!({"type": "browser"}));
        v.as_array().cloned().unwrap_or_default()
    }

    fn close(self) {
        self.send("DELETE", "", None);
    }
}

/// W3C's web element reference.
fn element_id(e: &Value) -> String {
    e["element-6066-11e4-a52e-4f735466cecf"]
        .as_str()
        .unwrap_or_else(|| panic!("not an element: {e}"))
        .to_string()
}

/// Standard base64 (RFC 4648), as WebDriver sends screenshots.
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = s
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .map(value)
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &d)| n | (d as u32) << (18 - 6 * i));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes_what_it_should() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8h"), b"hello!");
    assert_eq!(base64_decode("aGk="), b"hi");
}

/// Headless Chromium's capabilities: downloads into `downloads`, and the console kept for
/// [`Session::browser_log`].
fn chrome(chromium: &Path, downloads: &Path) -> Value {
    json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1300,1000"],
            "prefs": {
                "download.default_directory": downloads,
                "download.prompt_for_download": false,
            },
        },
        "goog:loggingPrefs": {"browser": "ALL"},
    })
}

/// The JavaScript errors in the browser's console (uncaught exceptions, `console.error`).
fn js_errors(c: &Session) -> Vec<String> {
    c.browser_log()
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
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
    let csv = {
        let c = Session::new(&url, chrome(&chromium, &downloads));
        let page = format!("file://{}", report.join("index.html").display());

        // The summary's counts are the Parquet's.
        c.goto(&page);
        c.wait_until("return document.body.dataset.tab === 'summary'");
        let ok_on_page = c.js("return [...document.querySelectorAll('table')][0].innerText");
        assert!(
            ok_on_page.as_str().unwrap().contains(&format!("ok\t{ok}")),
            "rows by status on the page: {ok_on_page}"
        );

        // One card per sampled face, every thumbnail decoded and drawn.
        c.goto(&format!("{page}#label%3Afemale"));
        c.wait_until("return document.querySelectorAll('#grid .card').length > 0");
        let cards = c.js("return document.querySelectorAll('#grid .card').length");
        let expected = c.js("return window.FACEBATCH_REPORT.galleries['label:female'].length");
        assert_eq!(cards, expected);
        c.wait_until(
            "return [...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)",
        );
        let rect = c.js(
            "const r = document.querySelector('#grid img.face').getBoundingClientRect(); \
             return [r.left, r.top, r.width, r.height].map(Math.round)",
        );
        let shot = c.screenshot();
        let [x, y, w, h] = [0, 1, 2, 3].map(|k| rect[k].as_u64().unwrap() as u32);
        let mut lum: Vec<u32> = Vec::new();
        for yy in y..(y + h).min(shot.height()) {
            for xx in x..(x + w).min(shot.width()) {
                let p = shot.get_pixel(xx, yy);
                lum.push(p[0] as u32 + p[1] as u32 + p[2] as u32);
            }
        }
        let (lo, hi) = (lum.iter().min().unwrap(), lum.iter().max().unwrap());
        assert!(
            hi - lo > 150,
            "the face thumbnail is drawn, not blank ({lo}..{hi})"
        );

        // Zoom: `z` on a face opens it large, Escape closes it.
        c.js("document.querySelectorAll('#grid .card')[0].focus(); return true");
        c.type_into_active("z");
        c.wait_until(
            "const z = document.getElementById('zoom'); return !z.hidden && \
             [...z.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)",
        );
        let big = c.js("return document.querySelector('#zoom img').getBoundingClientRect().width");
        assert!(
            big.as_f64().unwrap() >= 200.0,
            "zoomed face is large: {big}"
        );
        c.js("document.body.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape', bubbles: true})); return true");
        c.wait_until("return document.getElementById('zoom').hidden");

        // A click and a keyboard shortcut record choices: on the female gallery, the
        // first card given "male" (a correction) and the second "female" by key 1 (the
        // label it has: a confirmation, not a correction).
        c.click(&c.find("#grid .card .buttons button:nth-child(2)"));
        c.js("document.querySelectorAll('#grid .card')[1].focus(); return true");
        c.type_into_active("1");
        let first_two = c.js(
            "return [...document.querySelectorAll('#grid .card')].slice(0, 2).map(e => e.className)",
        );
        assert_eq!(
            first_two,
            json!(["card chosen corrected", "card chosen confirmed"]),
            "{first_two}"
        );
        // The rest of the female gallery by clicks, alternating; then "Accept this page"
        // on the male gallery confirms every face there.
        c.js(
            "window.facebatchReport.show('label:female'); \
             const n = document.querySelectorAll('#grid .card').length; \
             for (let i = 2; i < n; i++) { \
               document.querySelectorAll('#grid .card')[i].querySelectorAll('.buttons button')[i % 2].click(); \
             } return true",
        );
        c.js("window.facebatchReport.show('label:male'); return true");
        c.click(&c.find("#accept-page"));
        let unchosen = c.js("return document.querySelectorAll('#grid .card:not(.chosen)').length");
        assert_eq!(unchosen, json!(0), "accept confirms every face on the page");
        let choices = c.js("return window.facebatchReport.choices()");
        let labels = c.js(
            "return Object.fromEntries(window.FACEBATCH_REPORT.rows.map(r => [r.id, r.label]))",
        );
        let count = choices.as_object().unwrap().len();
        assert!(count as u64 >= ok.min(4), "{choices}");
        let (mut corrected, mut confirmed) = (0, 0);
        for (id, label) in choices.as_object().unwrap() {
            if labels[id] == *label {
                confirmed += 1;
            } else {
                corrected += 1;
            }
        }
        // They survive a reload (localStorage).
        c.refresh();
        c.wait_until("return document.getElementById('correction-count') !== null");
        let shown = c.js("return document.getElementById('correction-count').textContent");
        assert_eq!(
            shown,
            json!(format!(
                "{corrected} corrected, {confirmed} confirmed, 0 not a face"
            ))
        );
        // The page says where the file goes and how to keep it with the report.
        let note = c.js("return document.getElementById('save-note').textContent");
        assert!(note.as_str().unwrap().contains("--import"), "{note}");
        // Download.
        c.click(&c.find("#download"));
        let file = downloads.join("corrections.csv");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !file.is_file() {
            assert!(
                Instant::now() < deadline,
                "corrections.csv was not downloaded"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c.close();
        std::fs::read_to_string(&file).unwrap()
    };
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "path,label,verdict,id,photo,face_index,box,model_label,model_confidence,already_aligned"
    );
    assert!(lines.len() >= 5, "{csv}");
    let crops = format!("{}/faces/", report.canonicalize().unwrap().display());
    for l in &lines[1..] {
        assert!(l.starts_with(&crops) && l.ends_with(",true"), "{l}");
        assert!(
            l.contains(",corrected,") || l.contains(",confirmed,"),
            "{l}"
        );
    }
    // The documented way to keep them: `report --import` into the report folder, where a
    // fresh browser (no localStorage) shows them again.
    let o = run(facebatch()
        .arg("report")
        .arg("--import")
        .arg(downloads.join("corrections.csv"))
        .arg("--out")
        .arg(&report));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!(
            "{} corrected",
            lines.iter().filter(|l| l.contains(",corrected,")).count()
        )),
        "{}",
        stdout(&o)
    );
    {
        let c = Session::new(&url, chrome(&chromium, &downloads));
        c.goto(&format!("file://{}", report.join("index.html").display()));
        c.wait_until("return document.getElementById('correction-count') !== null");
        let again = c.js("return Object.keys(window.facebatchReport.choices()).length");
        assert_eq!(again, json!(lines.len() - 1), "imported choices shown");
        assert!(js_errors(&c).is_empty(), "{:?}", js_errors(&c));
        c.close();
    }
    // The corrections train a model from the folder the browser saved them in, run from a
    // folder that is neither the report's nor the download's.
    if cfg!(feature = "train") {
        let lab = tmp.path().join("lab");
        std::fs::create_dir_all(&lab).unwrap();
        let o = run(facebatch()
            .current_dir(&lab)
            .arg("train")
            .arg("--labels-csv")
            .arg("../downloads/corrections.csv")
            .args(["--out", "model"])
            .args(short_training("1", "4", "1"))
            .arg("--init")
            .arg(default_model()));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(lab.join("model/model.onnx").is_file());
    }
}

/// One `ok` row whose confidence is NaN (another tool's output, a numeric bug) used to
/// throw in the label gallery (`confidence.toFixed` of null), which then showed no face at
/// all. Now every face of the label is drawn, the NaN one says "NaN", and the page raised
/// no JavaScript error.
#[test]
fn a_nan_confidence_does_not_blank_the_gallery() {
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    jpeg_corpus(&photos, 6, 1, &sample_face());
    let out = tmp.path().join("results.parquet");
    let o = run(&mut classify_default([&photos], &out));
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    // The same rows, the first ok row's confidence NaN, written as another tool would.
    let (batches, meta) = read_parquet(&out);
    let schema = batches[0].schema();
    let batch = arrow::compute::concat_batches(&schema, &batches).unwrap();
    let status = col::<StringArray>(&batch, "status");
    let labels = col::<StringArray>(&batch, "label");
    let nan_row = (0..batch.num_rows())
        .find(|&i| status.value(i) == "ok")
        .expect("an ok row");
    let label = labels.value(nan_row).to_string();
    let faces_of_label = (0..batch.num_rows())
        .filter(|&i| status.value(i) == "ok" && labels.value(i) == label)
        .count();
    let conf: Float32Array = col::<Float32Array>(&batch, "confidence")
        .iter()
        .enumerate()
        .map(|(i, v)| if i == nan_row { Some(f32::NAN) } else { v })
        .collect();
    let k = schema.index_of("confidence").unwrap();
    let mut columns = batch.columns().to_vec();
    columns[k] = std::sync::Arc::new(conf);
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let nan = tmp.path().join("nan.parquet");
    write_parquet(&nan, &batch, meta);

    let report = tmp.path().join("report");
    assert_code(&run(&mut report_cmd(&nan, &report)), 0);
    let (_driver, url) = start_driver(&chromedriver);
    let c = Session::new(&url, chrome(&chromium, &tmp.path().join("downloads")));
    let page = format!("file://{}", report.join("index.html").display());
    let tab = format!("label:{label}");
    c.goto(&format!("{page}#{}", tab.replace(':', "%3A")));
    c.wait_until(&format!("return document.body.dataset.tab === {tab:?}"));
    let cards = c.js("return document.querySelectorAll('#grid .card').length");
    assert_eq!(
        cards,
        json!(faces_of_label),
        "one card per face labelled {label} in the Parquet"
    );
    let broken = c.js("return document.querySelectorAll('#grid .card.broken').length");
    assert_eq!(broken, json!(0), "every card drawn in full");
    let text = c.js(&format!(
        "return document.querySelector('#grid .card[data-id=\"{nan_row}\"] .conf').textContent"
    ));
    assert_eq!(text, json!("NaN"), "the NaN is shown as such");
    // The summary draws too, and no exception was raised anywhere on the way.
    c.js("window.facebatchReport.show('summary'); return true");
    c.wait_until("return document.querySelectorAll('#histograms svg').length > 0");
    let problems = c.js("return window.facebatchReport.problems()");
    assert_eq!(problems, json!([]), "the page caught no error");
    let errors = js_errors(&c);
    assert!(errors.is_empty(), "JavaScript errors: {errors:?}");
    // The console does see an uncaught exception (so the check above can fail).
    c.js("setTimeout(() => { throw new Error('probe-exception'); }, 0); return true");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !js_errors(&c).iter().any(|e| e.contains("probe-exception")) {
        assert!(
            Instant::now() < deadline,
            "the browser log shows no uncaught exception"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.close();
}

/// The page draws each face on its own: a face whose data makes its card throw (forced
/// here by giving it a member whose probabilities are null) gets a card saying so, and
/// every other face of the gallery is still drawn.
#[test]
fn a_face_that_cannot_be_drawn_does_not_stop_the_others() {
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    jpeg_corpus(&photos, 4, 1, &sample_face());
    let out = tmp.path().join("results.parquet");
    let o = run(&mut classify_default([&photos], &out));
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    let report = tmp.path().join("report");
    assert_code(&run(&mut report_cmd(&out, &report)), 0);
    let (_driver, url) = start_driver(&chromedriver);
    let c = Session::new(&url, chrome(&chromium, &tmp.path().join("downloads")));
    c.goto(&format!("file://{}", report.join("index.html").display()));
    c.wait_until("return document.body.dataset.tab === 'summary'");
    let tab = c.js(
        "const g = Object.keys(window.FACEBATCH_REPORT.galleries).find(k => k.startsWith('label:')); \
         const id = window.FACEBATCH_REPORT.galleries[g][0]; \
         window.FACEBATCH_REPORT.rows.find(r => r.id === id).members = { broken: null }; \
         window.facebatchReport.show(g); return g",
    );
    let tab = tab.as_str().unwrap();
    let cards = c.js("return document.querySelectorAll('#grid .card').length");
    let expected = c.js(&format!(
        "return window.FACEBATCH_REPORT.galleries[{tab:?}].length"
    ));
    assert_eq!(cards, expected, "every face of {tab} has its card");
    let broken = c.js("return document.querySelectorAll('#grid .card.broken').length");
    assert_eq!(broken, json!(1));
    let problems = c.js("return window.facebatchReport.problems()");
    assert_eq!(problems.as_array().unwrap().len(), 1, "{problems}");
    let errors = js_errors(&c);
    assert!(errors.is_empty(), "no uncaught error: {errors:?}");
    c.close();
}
