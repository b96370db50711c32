//! Object stores through the real binary, against a real local S3 server (moto's, started
//! here on a random loopback port) and a real local HTTP server: listing past 1,000 keys,
//! multipart outputs, two writers, `kill -9` and a failure at every step of the commit
//! protocol then a resume that ends exactly once, shards, credentials from the environment
//! only, a missing bucket, a bad endpoint, an HTTP manifest with a denied and a missing URL.
//!
//! The server comes from `FACEBATCH_MOTO_SERVER` (a `moto_server` executable;
//! `scripts/ensure-s3-server.sh` installs the pinned one and prints its path), else
//! `.cache/s3-venv/bin/moto_server`. Without one the tests say so and pass, unless
//! `FACEBATCH_REQUIRE_S3=1` (set by `.ci/run`), which makes a missing server a failure.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

const KEY_ID: &str = "facebatch-test-key";
/// A secret that must never appear in a log line, an error or the output's metadata.
const SECRET: &str = "facebatch-test-SECRET-4f1c";

struct S3 {
    endpoint: String,
}

/// The local S3 server, started once for this test binary; `None` (and a note) when there
/// is none and none is required.
fn s3() -> Option<&'static S3> {
    static SERVER: OnceLock<Option<S3>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let exe = moto_exe();
            if !exe.is_file() {
                assert!(
                    std::env::var_os("FACEBATCH_REQUIRE_S3").is_none(),
                    "FACEBATCH_REQUIRE_S3 is set but there is no S3 server at {}: run scripts/ensure-s3-server.sh",
                    exe.display()
                );
                eprintln!(
                    "objects_cli: no S3 server ({}); skipped. scripts/ensure-s3-server.sh installs one.",
                    exe.display()
                );
                return None;
            }
            Some(start_server(exe, &[]))
        })
        .as_ref()
}

/// The `moto_server` executable, if there is one (no note: [`s3`] gives it).
fn moto_exe() -> PathBuf {
    std::env::var_os("FACEBATCH_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/s3-venv/bin/moto_server"))
}

/// Starts a moto server on a random loopback port with `env`, and waits for it.
fn start_server(exe: PathBuf, env: &[(&str, String)]) -> S3 {
    let port = free_port();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    // Started from a thread that lives as long as the process, so that the server's
    // parent-death signal fires when the test binary exits, not when a test ends.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(&exe);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: prctl in the child before exec, no allocation.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("moto_server starts");
        tx.send(()).unwrap();
        let _keep = child;
        loop {
            std::thread::park();
        }
    });
    rx.recv().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    S3 {
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl S3 {
    /// A new, empty bucket.
    fn bucket(&self, name: &str) -> Bucket {
        let r = ureq::put(&format!("{}/{name}", self.endpoint))
            .send_empty()
            .unwrap();
        assert_eq!(r.status(), 200);
        // The provider the binary installs at start-up (reqwest is built without one).
        facebatch::remote::install_crypto();
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(name)
            .with_region("us-east-1")
            .with_access_key_id(KEY_ID)
            .with_secret_access_key(SECRET)
            .build()
            .unwrap();
        Bucket {
            name: name.to_string(),
            store: Arc::new(store),
        }
    }

    /// `cmd` with this server's endpoint and credentials in its environment, and nothing
    /// else to find credentials in: no `~/.aws`, no profile.
    fn env<'c>(&self, cmd: &'c mut Command, home: &Path) -> &'c mut Command {
        for var in [
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("HOME", home)
            .env("AWS_ENDPOINT", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            // The runtime and models stay where the other tests keep them.
            .env("FACEBATCH_CACHE_DIR", cache_dir())
    }
}

/// The cache the other tests use (ONNX Runtime, the detector), whatever HOME is.
fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FACEBATCH_CACHE_DIR") {
        return d.into();
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("facebatch");
    }
    PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/facebatch")
}

struct Bucket {
    name: String,
    store: Arc<dyn object_store::ObjectStore>,
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
    .block_on(f)
}

impl Bucket {
    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.name)
    }

    /// Puts every (key, bytes), 32 at a time.
    fn put_all(&self, objects: Vec<(String, Vec<u8>)>) {
        use futures::StreamExt;
        block_on(async {
            let results: Vec<_> = futures::stream::iter(objects)
                .map(|(k, b)| {
                    let store = self.store.clone();
                    async move { store.put(&ObjectPath::from(k), b.into()).await }
                })
                .buffer_unordered(32)
                .collect()
                .await;
            for r in results {
                r.unwrap();
            }
        });
    }

    fn keys(&self) -> BTreeSet<String> {
        use futures::StreamExt;
        block_on(async {
            self.store
                .list(None)
                .map(|m| m.unwrap().location.to_string())
                .collect()
                .await
        })
    }

    fn exists(&self, key: &str) -> bool {
        match block_on(self.store.head(&ObjectPath::from(key))) {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => panic!("{e}"),
        }
    }

    /// Downloads `key` into `dir`.
    fn download(&self, key: &str, dir: &Path) -> PathBuf {
        let bytes = block_on(async {
            self.store
                .get(&ObjectPath::from(key))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        });
        let path = dir.join(key.replace('/', "_"));
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// Small distinct JPEG faces, `n` of them, as (name, bytes).
fn jpegs(n: usize) -> Vec<(String, Vec<u8>)> {
    let face = image::imageops::resize(
        &sample_face(),
        46,
        56,
        image::imageops::FilterType::Triangle,
    );
    (0..n)
        .map(|i| {
            let mut img = face.clone();
            img.put_pixel(
                (i % 46) as u32,
                (i / 46 % 56) as u32,
                image::Rgb([255, 0, 0]),
            );
            let bytes = encode(
                &image::DynamicImage::ImageRgb8(img),
                image::ImageFormat::Jpeg,
            );
            (format!("img{i:05}.jpg"), bytes)
        })
        .collect()
}

/// `facebatch classify INPUTS --out OUT` for these tests: whole-image crops (no detector:
/// what is tested here is where bytes come from and go), the default model.
fn classify(s3: &S3, home: &Path, inputs: &[&str], out: &str, extra: &[&str]) -> Command {
    let mut c = classify_default(inputs, out);
    c.args(["--faces", "whole", "--threads", "2"]).args(extra);
    s3.env(&mut c, home);
    c
}

/// The (path) of every row, asserting none appears twice.
fn unique_paths(file: &Path) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for p in paths(file) {
        assert!(
            all.insert(p.clone()),
            "{p} appears twice in {}",
            file.display()
        );
    }
    all
}

#[test]
fn an_s3_prefix_of_more_than_a_thousand_keys_is_read_page_by_page_and_written_back() {
    let Some(s3) = s3() else { return };
    let b = s3.bucket("many-keys");
    let tmp = tempfile::tempdir().unwrap();
    let mut objects: Vec<(String, Vec<u8>)> = jpegs(1005)
        .into_iter()
        .map(|(name, bytes)| (format!("photos/d{}/{name}", name.len() % 3), bytes))
        .collect();
    let expected: BTreeSet<String> = objects
        .iter()
        .map(|(k, _)| k.strip_prefix("photos/").unwrap().to_string())
        .collect();
    // Not images, or not below the prefix: not read.
    objects.push(("photos/notes.txt".into(), b"not an image".to_vec()));
    objects.push(("photosphere/x.jpg".into(), objects[0].1.clone()));
    b.put_all(objects);
    let o = run(classify(
        s3,
        tmp.path(),
        &[&b.url("photos/")],
        &b.url("out/labels.parquet"),
        &["-vv"],
    )
    .arg("--json"));
    assert_code(&o, 0);
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!text.contains(SECRET), "the secret was logged");
    let file = b.download("out/labels.parquet", tmp.path());
    assert_eq!(unique_paths(&file), expected);
    let (rows, meta) = read_rows(&file);
    assert!(
        strings(&rows, "root")
            .iter()
            .all(|r| r.as_deref() == Some(&b.url("photos/")[..]))
    );
    assert!(meta.values().all(|v| !v.contains(SECRET)));
    // Nothing of the protocol is left: no lock, no parts, no commit record.
    let left: Vec<String> = b
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("out/"))
        .collect();
    assert_eq!(left, ["out/labels.parquet"], "{left:?}");
}

/// Every step of a run into an object store at which a failure is injected: the local
/// protocol's steps (reliability_cli.rs) and the store's own (the upload).
const POINTS: &[&str] = &[
    "part-write@2",
    "part-rename@2",
    "commit",
    "merge-write",
    "merge-rename",
    "upload",
    "upload-part",
    "cleanup-stats",
    "cleanup-parts",
    "cleanup-part@2",
    "cleanup-run",
    "cleanup-commit",
    "cleanup-dir",
];

/// The failpoint harness on the object-store backend: `kill -9` (and an I/O error) at every
/// step, the upload included, then `--resume`: no final object appears before its upload
/// completes, a crashed run's lock is taken over once its lease ends, and every image is
/// in the output exactly once.
#[test]
fn a_failure_at_any_step_into_s3_then_resume_leaves_every_image_exactly_once() {
    let Some(s3) = s3() else { return };
    let b = s3.bucket("failpoints");
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    let expected: BTreeSet<String> = jpeg_corpus(&photos, 30, 3, &sample_face())
        .into_iter()
        .collect();
    let small = [
        "--batch-size",
        "4",
        "--checkpoint-rows",
        "10",
        "--lock-lease",
        "1",
    ];
    for action in ["crash", "error"] {
        for point in POINTS {
            let key = format!("fp/{}-{action}.parquet", point.replace('@', "-"));
            let out = b.url(&key);
            let mut c = classify(s3, tmp.path(), &[photos.to_str().unwrap()], &out, &small);
            let o = run(c
                .arg("--features")
                .env("FACEBATCH_FAILPOINT", format!("{point}={action}")));
            assert_ne!(
                o.status.code(),
                Some(0),
                "{point}={action} must fail the run"
            );
            if [
                "part-write@2",
                "part-rename@2",
                "commit",
                "merge-write",
                "merge-rename",
                "upload",
                "upload-part",
            ]
            .contains(point)
            {
                assert!(
                    !b.exists(&key),
                    "{point}={action}: no final object before the upload completes"
                );
            }
            if action == "crash" {
                // The crashed run's lock stays until its lease (1 s) has run out.
                std::thread::sleep(Duration::from_millis(1100));
            }
            let mut c = classify(s3, tmp.path(), &[photos.to_str().unwrap()], &out, &small);
            let o = run(c.args(["--features", "--resume"]));
            assert_code(&o, 0);
            let file = b.download(&key, tmp.path());
            assert_eq!(unique_paths(&file), expected, "{point}={action}");
            let stats = b.download(&format!("{key}.features.json"), tmp.path());
            assert_eq!(
                read_json(&stats)["count"],
                expected.len(),
                "{point}={action}"
            );
            let left: Vec<String> = b
                .keys()
                .into_iter()
                .filter(|k| {
                    k.contains(&key.replace("fp/", ""))
                        && k != &key
                        && !k.ends_with(".features.json")
                })
                .collect();
            assert!(left.is_empty(), "{point}={action}: left behind {left:?}");
        }
    }
}

/// Two writers into one object: the second exits 75 at once and names the holder; the
/// first finishes.
#[test]
fn a_second_writer_into_the_same_object_gets_exit_75() {
    let Some(s3) = s3() else { return };
    let b = s3.bucket("two-writers");
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    jpeg_corpus(&photos, 600, 3, &sample_face());
    let out = b.url("o.parquet");
    let mut first = spawn_piped(&mut classify(
        s3,
        tmp.path(),
        &[photos.to_str().unwrap()],
        &out,
        &["--batch-size", "1"],
    ));
    wait_while_running("the lock object", &mut first, || {
        b.exists(".o.parquet.lock")
    });
    let o = run(&mut classify(
        s3,
        tmp.path(),
        &[photos.to_str().unwrap()],
        &out,
        &[],
    ));
    assert_code(&o, 75);
    let err = stderr(&o);
    assert!(
        err.contains("is writing s3://two-writers/o.parquet") && err.contains("pid"),
        "{err}"
    );
    let o = first.wait_with_output().unwrap();
    assert_code(&o, 0);
    assert_eq!(paths(&b.download("o.parquet", tmp.path())).len(), 600);
    assert!(!b.exists(".o.parquet.lock"), "the lock is given back");
}

/// Shards of an s3 prefix, by key: two runs into two objects cover every key once.
#[test]
fn shards_of_an_s3_prefix_split_it_by_key() {
    let Some(s3) = s3() else { return };
    let b = s3.bucket("shards");
    let tmp = tempfile::tempdir().unwrap();
    let objects: Vec<(String, Vec<u8>)> = jpegs(40)
        .into_iter()
        .map(|(n, by)| (format!("in/{n}"), by))
        .collect();
    let all: BTreeSet<String> = objects.iter().map(|(k, _)| k[3..].to_string()).collect();
    b.put_all(objects);
    let mut seen = BTreeSet::new();
    for k in 0..2 {
        let out = b.url(&format!("out/part-{k}-of-2.parquet"));
        let o = run(&mut classify(
            s3,
            tmp.path(),
            &[&b.url("in/")],
            &out,
            &["--shard", &format!("{k}/2")],
        ));
        assert_code(&o, 0);
        let got = unique_paths(&b.download(&format!("out/part-{k}-of-2.parquet"), tmp.path()));
        assert!(
            !got.is_empty() && got.len() < all.len(),
            "shard {k}: {}",
            got.len()
        );
        assert!(seen.is_disjoint(&got), "shard {k} overlaps");
        seen.extend(got);
    }
    assert_eq!(seen, all);
}

/// Store-level problems are one fatal message (exit 2) before any work: a missing bucket
/// (input or output), an endpoint that does not answer, a missing object, an HTTP prefix.
#[test]
fn a_missing_bucket_or_a_bad_endpoint_is_one_fatal_message() {
    let Some(s3) = s3() else { return };
    let b = s3.bucket("fatal");
    let tmp = tempfile::tempdir().unwrap();
    b.put_all(
        jpegs(2)
            .into_iter()
            .map(|(n, by)| (format!("in/{n}"), by))
            .collect(),
    );
    let local_out = tmp.path().join("o.parquet");
    let local_out = local_out.to_str().unwrap();
    let o = run(&mut classify(
        s3,
        tmp.path(),
        &["s3://no-such-bucket/in/"],
        local_out,
        &[],
    ));
    assert_fatal(&o, "s3://no-such-bucket/in/");
    assert!(stderr(&o).contains("NoSuchBucket"), "{}", stderr(&o));
    let o = run(&mut classify(
        s3,
        tmp.path(),
        &[&b.url("in/")],
        "s3://no-such-bucket/o.parquet",
        &[],
    ));
    assert_fatal(&o, "s3://no-such-bucket/");
    let o = run(&mut classify(
        s3,
        tmp.path(),
        &[&b.url("in/nothing.jpg")],
        local_out,
        &[],
    ));
    assert_fatal(&o, "does not exist");
    let o = run(classify(s3, tmp.path(), &[&b.url("in/")], local_out, &[])
        .env("AWS_ENDPOINT", format!("http://127.0.0.1:{}", free_port())));
    assert_fatal(&o, "s3://fatal/in/");
    let o = run(&mut classify(
        s3,
        tmp.path(),
        &["http://127.0.0.1:9/photos/"],
        local_out,
        &[],
    ));
    assert_fatal(&o, "cannot be listed");
    assert!(!Path::new(local_out).exists());
}

/// A tiny HTTP server for the manifest test: serves `files` (GET and HEAD), answers 403 for
/// `/denied.jpg` and 404 for everything else.
fn http_server(files: Vec<(String, Vec<u8>)>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let files: std::collections::HashMap<String, Vec<u8>> = files.into_iter().collect();
    let files = Arc::new(files);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let files = files.clone();
            std::thread::spawn(move || serve(stream, &files));
        }
    });
    port
}

fn serve(mut stream: TcpStream, files: &std::collections::HashMap<String, Vec<u8>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request).unwrap_or(0) == 0 {
            return;
        }
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok() && line.trim() != "" {
            line.clear();
        }
        let mut words = request.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let (status, body): (&str, &[u8]) = match files.get(path) {
            Some(b) => ("200 OK", b),
            None if path == "/denied.jpg" => ("403 Forbidden", b"denied"),
            None => ("404 Not Found", b"missing"),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: image/jpeg\r\nLast-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\n\r\n",
            body.len()
        );
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        if method != "HEAD" && stream.write_all(body).is_err() {
            return;
        }
    }
}

/// A manifest of URLs served by a local HTTP server, with a path beside it: every line is
/// a row, the denied and the missing URL error rows that say why; the run goes on.
#[test]
fn an_http_manifest_gives_a_row_per_line_and_errors_for_denied_and_missing_urls() {
    let Some(s3) = s3() else { return };
    let files: Vec<(String, Vec<u8>)> = jpegs(3)
        .into_iter()
        .map(|(n, b)| (format!("/img/{n}"), b))
        .collect();
    let port = http_server(files.clone());
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("local.jpg"), &files[0].1).unwrap();
    let mut manifest = String::from("# photos to label\n");
    for (path, _) in &files {
        manifest.push_str(&format!("http://127.0.0.1:{port}{path}\n"));
    }
    manifest.push_str(&format!("http://127.0.0.1:{port}/denied.jpg\n"));
    manifest.push_str(&format!("http://127.0.0.1:{port}/gone.jpg\n"));
    manifest.push_str("local.jpg\n");
    let list = tmp.path().join("urls.txt");
    std::fs::write(&list, manifest).unwrap();
    let out = tmp.path().join("o.parquet");
    let o = run(&mut classify(
        s3,
        tmp.path(),
        &[list.to_str().unwrap()],
        out.to_str().unwrap(),
        &[],
    ));
    assert_code(&o, 1); // two error rows
    let (rows, _) = read_rows(&out);
    let path = strings(&rows, "path");
    let status = strings(&rows, "status");
    let error = strings(&rows, "error");
    assert_eq!(rows.num_rows(), 6);
    for (i, p) in path.iter().enumerate() {
        let p = p.as_deref().unwrap();
        let (s, e) = (
            status[i].as_deref().unwrap(),
            error[i].as_deref().unwrap_or(""),
        );
        if p.ends_with("denied.jpg") {
            assert_eq!(s, "error");
            assert!(e.contains("denied") || e.contains("403"), "{e}");
        } else if p.ends_with("gone.jpg") {
            assert_eq!(s, "error");
            assert!(e.contains("gone") || e.contains("404"), "{e}");
        } else {
            assert_eq!(s, "ok", "{p}: {e}");
        }
    }
}

/// `n` distinct small PPM images of noise under `dir` (distinct pixels: distinct features,
/// so the output does not compress away); their names.
fn noise_images(dir: &Path, n: usize) -> BTreeSet<String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|i| {
            let mut bytes = b"P6\n16 16\n255\n".to_vec();
            for _ in 0..16 * 16 * 3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.push((state >> 24) as u8);
            }
            let name = format!("n{i:05}.ppm");
            std::fs::write(dir.join(&name), bytes).unwrap();
            name
        })
        .collect()
}

/// An output over 10 MiB goes up as a multipart upload; `kill -9` inside it (after its
/// first part) leaves no object, and the resume publishes every row exactly once.
#[test]
fn an_output_over_10_mib_is_a_multipart_upload_and_a_kill_inside_it_publishes_nothing() {
    let Some(s3) = s3() else { return };
    let b = s3.bucket("multipart");
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("noise");
    let expected = noise_images(&photos, 14_000);
    let out = b.url("big/features.parquet");
    let args = [
        "--features",
        "--lock-lease",
        "1",
        "--checkpoint-rows",
        "2000",
    ];
    let o = run(
        classify(s3, tmp.path(), &[photos.to_str().unwrap()], &out, &args)
            .env("FACEBATCH_FAILPOINT", "upload-part@2=crash"),
    );
    assert_ne!(o.status.code(), Some(0), "killed inside the upload");
    assert!(
        !b.exists("big/features.parquet"),
        "no object before the upload completes"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let o = run(classify(s3, tmp.path(), &[photos.to_str().unwrap()], &out, &args).arg("--resume"));
    assert_code(&o, 0);
    let meta = block_on(b.store.head(&ObjectPath::from("big/features.parquet"))).unwrap();
    assert!(meta.size > 10 * 1024 * 1024, "{} bytes", meta.size);
    // S3 gives a multipart object the ETag "MD5-OF-PART-MD5S-PARTS".
    let etag = meta.e_tag.unwrap_or_default();
    assert!(
        etag.trim_matches('"').ends_with("-2"),
        "not a two-part upload: {etag}"
    );
    let file = b.download("big/features.parquet", tmp.path());
    let got: BTreeSet<String> = unique_paths(&file)
        .into_iter()
        .map(|p| p.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(got, expected);
}

/// A dataset folder on a store, written by two shards: each publishes its part and marker,
/// nothing of the protocol stays, a finished shard is not redone, another shard count is
/// refused, and `report` reads the dataset and its photos from the store.
#[test]
fn a_dataset_on_s3_from_two_shards_is_complete_and_reported_from_the_store() {
    let Some(s3) = s3() else { return };
    let b = s3.bucket("dataset");
    let tmp = tempfile::tempdir().unwrap();
    let objects: Vec<(String, Vec<u8>)> = jpegs(30)
        .into_iter()
        .map(|(n, by)| (format!("in/{n}"), by))
        .collect();
    let all: BTreeSet<String> = objects.iter().map(|(k, _)| k[3..].to_string()).collect();
    b.put_all(objects);
    let out = b.url("labels/");
    for k in 0..2 {
        let o = run(&mut classify(
            s3,
            tmp.path(),
            &[&b.url("in/")],
            &out,
            &["--shard", &format!("{k}/2")],
        ));
        assert_code(&o, 0);
    }
    let keys: Vec<String> = b
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("labels/"))
        .collect();
    assert_eq!(
        keys,
        [
            "labels/_SUCCESS-00000-of-00002.json",
            "labels/_SUCCESS-00001-of-00002.json",
            "labels/part-00000-of-00002.parquet",
            "labels/part-00001-of-00002.parquet",
        ],
        "{keys:?}"
    );
    let mut seen = BTreeSet::new();
    for k in 0..2 {
        let part = b.download(&format!("labels/part-0000{k}-of-00002.parquet"), tmp.path());
        let got = unique_paths(&part);
        assert!(seen.is_disjoint(&got));
        seen.extend(got);
        let marker = b.download(
            &format!("labels/_SUCCESS-0000{k}-of-00002.json"),
            tmp.path(),
        );
        assert_eq!(
            read_json(&marker)["rows"].as_u64().unwrap() as usize,
            paths(&part).len()
        );
    }
    assert_eq!(seen, all);
    let o = run(&mut classify(
        s3,
        tmp.path(),
        &[&b.url("in/")],
        &out,
        &["--shard", "0/2"],
    ));
    assert_code(&o, 0);
    assert_stdout_has(&o, "already complete");
    let o = run(&mut classify(
        s3,
        tmp.path(),
        &[&b.url("in/")],
        &out,
        &["--shard", "0/3"],
    ));
    assert_fatal(&o, "another shard count");
    // The report reads the dataset and crops the faces from the photos on the store.
    let report = tmp.path().join("report");
    let mut c = facebatch();
    c.args(["--json", "report"])
        .arg(&out)
        .arg("--out")
        .arg(&report);
    s3.env(&mut c, tmp.path());
    let o = run(&mut c);
    assert_code(&o, 0);
    let summary: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(summary["rows"], 30);
    assert_eq!(summary["missing"], 0, "every photo read from the store");
}

/// A scheduled job over an s3 prefix: the second run skips the objects that did not change
/// (size and last-modified from the listing) and reads the rewritten and the new one. A
/// job's output on a store is refused with one message.
#[test]
fn a_job_over_an_s3_prefix_skips_unchanged_objects() {
    let Some(s3) = s3() else { return };
    let b = s3.bucket("jobs");
    let tmp = tempfile::tempdir().unwrap();
    let mut images = jpegs(12);
    let extra = images.pop().unwrap();
    b.put_all(
        images
            .iter()
            .map(|(n, by)| (format!("in/{n}"), by.clone()))
            .collect(),
    );
    let write_job = |output: &str| {
        let file = tmp.path().join("job.toml");
        std::fs::write(
            &file,
            format!(
                "name = \"s3\"\ninputs = [{:?}]\noutput = {output:?}\nmodel = {:?}\n\
                 [classify]\nfaces = \"whole\"\nthreads = 1\n",
                b.url("in/"),
                repo().join("models/facebatch-gender").display().to_string(),
            ),
        )
        .unwrap();
        file
    };
    let job = write_job("labels");
    let run_job = |date: &str| {
        let mut c = facebatch();
        c.arg("run").arg(&job).args(["--date", date]);
        s3.env(&mut c, tmp.path());
        run(&mut c)
    };
    assert_code(&run_job("2026-12-01"), 0);
    // One object rewritten (other bytes), one new. S3's last-modified has whole seconds:
    // the rewrite lands in a later one.
    std::thread::sleep(Duration::from_millis(1100));
    b.put_all(vec![
        ("in/img00000.jpg".into(), images[1].1.clone()),
        (format!("in/{}", extra.0), extra.1.clone()),
    ]);
    assert_code(&run_job("2026-12-02"), 0);
    let marker = read_json(
        &tmp.path()
            .join("labels/dt=2026-12-02/_SUCCESS-00000-of-00001.json"),
    );
    assert_eq!(marker["unchanged"], 10, "{marker}");
    assert_eq!(marker["files"], 2, "{marker}");
    let job = write_job(&b.url("labels/"));
    let mut c = facebatch();
    c.arg("run").arg(&job).args(["--date", "2026-12-03"]);
    s3.env(&mut c, tmp.path());
    assert_fatal(&run(&mut c), "not supported yet");
}

/// With IAM authentication on (a second moto server): an object the credentials may not
/// read is an error row saying access was denied, and the run goes on; credentials the
/// store does not know are one fatal message before any work.
#[test]
fn a_denied_object_is_an_error_row_and_unknown_credentials_are_fatal() {
    if s3().is_none() {
        return;
    }
    let exe = moto_exe();
    let python = exe.with_file_name("python");
    let setup = repo().join("tests/fixtures/s3_iam_setup.py");
    let server = start_server(exe, &[("INITIAL_NO_AUTH_ACTION_COUNT", "7".into())]);
    let tmp = tempfile::tempdir().unwrap();
    let face = tmp.path().join("face.jpg");
    std::fs::write(&face, &jpegs(1)[0].1).unwrap();
    let o = run(Command::new(&python)
        .arg(&setup)
        .arg(&server.endpoint)
        .arg(&face));
    assert_code(&o, 0);
    let keys = stdout(&o);
    let (key, secret) = keys.trim().split_once(' ').unwrap();
    let out = tmp.path().join("o.parquet");
    let command = |key: &str, secret: &str| {
        let mut c = classify(
            &server,
            tmp.path(),
            &["s3://denied/in/"],
            out.to_str().unwrap(),
            &[],
        );
        c.env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret);
        c
    };
    let o = run(&mut command(key, secret));
    assert_code(&o, 1); // one error row
    let (rows, _) = read_rows(&out);
    let status = strings(&rows, "status");
    let error = strings(&rows, "error");
    for (i, p) in strings(&rows, "path").iter().enumerate() {
        let p = p.as_deref().unwrap();
        if p == "secret.jpg" {
            assert_eq!(status[i].as_deref(), Some("error"));
            let e = error[i].as_deref().unwrap();
            assert!(
                e.contains("access denied") && e.contains("AccessDenied"),
                "{e}"
            );
        } else {
            assert_eq!(status[i].as_deref(), Some("ok"), "{p}");
        }
    }
    assert_eq!(rows.num_rows(), 3);
    std::fs::remove_file(&out).unwrap();
    let o = run(&mut command("AKIAUNKNOWN", "wrong"));
    assert_fatal(&o, "InvalidAccessKeyId");
    assert!(!out.exists());
}
