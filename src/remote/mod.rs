//! Object stores: where bytes live when they are not on a local disk.
//!
//! One seam, the `object_store` crate's [`ObjectStore`]: `s3://`, `gs://` and `az://` URLs
//! reach their builders through the builders' `from_env` (the standard credential chains,
//! `AWS_ENDPOINT`, `AWS_ALLOW_HTTP` and the like), `http(s)://` URLs reach the HTTP store.
//! Everything here is blocking on the outside ([`block_on`] runs one shared runtime), so the
//! pipeline's stages, which are threads, call it as they call the file system.
//!
//! Secrets never leave this module in a message: [`ObjectUrl`]'s `Display` drops a URL's
//! user name, password and query (where SAS tokens and signatures live), and errors carry
//! that form only.

pub mod lease;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};

/// Where an [`ObjectUrl`]'s bytes are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `s3://bucket/key` (AWS S3 and S3-compatible servers: MinIO, Ceph, R2, moto).
    S3,
    /// `gs://bucket/key` (Google Cloud Storage).
    Gcs,
    /// `az://container/key` (Azure Blob Storage; the account comes from the environment).
    Azure,
    /// `http://` or `https://`: single objects only, no listing.
    Http,
}

impl Scheme {
    /// The name a person reads in messages.
    pub fn service(self) -> &'static str {
        match self {
            Scheme::S3 => "S3",
            Scheme::Gcs => "Google Cloud Storage",
            Scheme::Azure => "Azure Blob Storage",
            Scheme::Http => "HTTP",
        }
    }

    /// Whether a prefix of this store can be listed.
    pub fn lists(self) -> bool {
        self != Scheme::Http
    }
}

/// A parsed object-store URL: a store (bucket, container or HTTP origin) and a key in it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ObjectUrl {
    pub scheme: Scheme,
    /// The bucket, container, or `host[:port]` of an HTTP URL.
    pub bucket: String,
    /// The key below the bucket, without a leading `/`; a prefix ends with `/` or is empty.
    pub key: String,
    /// The whole URL as given (with any query), for the HTTP store only. Never displayed.
    full: String,
}

/// The schemes [`ObjectUrl::parse`] takes, for messages.
pub const SCHEMES: &str = "s3://, gs://, az://, http:// or https://";

impl ObjectUrl {
    /// `None` when `text` is not a URL (a local path); an error for a URL facebatch cannot
    /// use (an unknown scheme, no bucket).
    pub fn parse(text: &str) -> Option<Result<ObjectUrl>> {
        let (scheme, _) = text.split_once("://")?;
        // A Windows drive (`C:\`) or a local path with `://` in it is not a URL scheme.
        if scheme.len() < 2 || !scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        Some(Self::parse_url(text, &scheme.to_ascii_lowercase()))
    }

    fn parse_url(text: &str, scheme: &str) -> Result<ObjectUrl> {
        let bad = |why: &str| Error::InvalidOption(format!("{}: {why}", redact(text)));
        let scheme = match scheme {
            "s3" | "s3a" => Scheme::S3,
            "gs" | "gcs" => Scheme::Gcs,
            "az" | "azure" | "abfs" | "abfss" => Scheme::Azure,
            "http" | "https" => Scheme::Http,
            other => {
                return Err(bad(&format!(
                    "`{other}://` is not a store facebatch reads; it takes {SCHEMES}"
                )));
            }
        };
        let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        let host = url.host_str().unwrap_or_default();
        if host.is_empty() {
            return Err(bad(match scheme {
                Scheme::Http => "no host",
                Scheme::Azure => "no container (az://CONTAINER/KEY)",
                _ => "no bucket (s3://BUCKET/KEY)",
            }));
        }
        let bucket = match (scheme, url.port()) {
            (Scheme::Http, Some(p)) => format!("{host}:{p}"),
            _ => host.to_string(),
        };
        let key = percent_decode(url.path().trim_start_matches('/'));
        Ok(ObjectUrl {
            scheme,
            bucket,
            key,
            full: url.to_string(),
        })
    }

    /// A prefix to list (ends with `/`, or names the whole bucket), rather than one object.
    pub fn is_prefix(&self) -> bool {
        self.key.is_empty() || self.key.ends_with('/')
    }

    /// The key as the store's path.
    pub fn path(&self) -> ObjectPath {
        ObjectPath::from(self.key.trim_end_matches('/'))
    }

    /// The last segment of the key (a file name).
    pub fn file_name(&self) -> &str {
        self.key
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
    }

    /// This URL's folder with `name` appended: `s3://b/x/out.parquet` with `out.parquet.parts/`
    /// gives `s3://b/x/out.parquet.parts/`.
    pub fn sibling(&self, name: &str) -> ObjectUrl {
        let dir = match self.key.trim_end_matches('/').rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/"),
            None => String::new(),
        };
        self.with_key(format!("{dir}{name}"))
    }

    /// The URL of `key` in the same store.
    pub fn with_key(&self, key: String) -> ObjectUrl {
        let full = format!("{}://{}/{}", self.scheme_str(), self.bucket, key);
        ObjectUrl {
            scheme: self.scheme,
            bucket: self.bucket.clone(),
            key,
            full,
        }
    }

    fn scheme_str(&self) -> &'static str {
        match self.scheme {
            Scheme::S3 => "s3",
            Scheme::Gcs => "gs",
            Scheme::Azure => "az",
            Scheme::Http => {
                if self.full.starts_with("https") {
                    "https"
                } else {
                    "http"
                }
            }
        }
    }

    /// The store holding this URL's bucket, built from the environment (credentials,
    /// endpoint, region). Stores are cached per bucket: a run opens each once.
    pub fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        type Stores = std::collections::HashMap<(Scheme, String), Arc<dyn ObjectStore>>;
        static STORES: OnceLock<std::sync::Mutex<Stores>> = OnceLock::new();
        let cache = STORES.get_or_init(Default::default);
        let id = (self.scheme, self.bucket.clone());
        if let Some(s) = cache.lock().expect("store cache").get(&id) {
            return Ok(s.clone());
        }
        install_crypto();
        let retry = object_store::RetryConfig {
            max_retries: 4,
            retry_timeout: Duration::from_secs(60),
            ..Default::default()
        };
        let root = format!("{}://{}", self.scheme_str(), self.bucket);
        let built: std::result::Result<Arc<dyn ObjectStore>, object_store::Error> =
            match self.scheme {
                Scheme::S3 => object_store::aws::AmazonS3Builder::from_env()
                    .with_url(&root)
                    .with_retry(retry)
                    .build()
                    .map(|s| Arc::new(s) as _),
                Scheme::Gcs => object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(&root)
                    .with_retry(retry)
                    .build()
                    .map(|s| Arc::new(s) as _),
                Scheme::Azure => object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(&self.bucket)
                    .with_retry(retry)
                    .build()
                    .map(|s| Arc::new(s) as _),
                Scheme::Http => object_store::http::HttpBuilder::new()
                    .with_url(&root)
                    .with_retry(retry)
                    .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
                    .build()
                    .map(|s| Arc::new(s) as _),
            };
        let store = built.map_err(|e| Error::Store {
            url: root.clone(),
            reason: format!(
                "cannot open {}: {} (docs/operations.md, \"Object stores\")",
                self.scheme.service(),
                clean(&e)
            ),
        })?;
        cache.lock().expect("store cache").insert(id, store.clone());
        Ok(store)
    }
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/{}", self.scheme_str(), self.bucket, self.key)
    }
}

impl fmt::Debug for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `text` without a URL's user, password and query, for messages.
pub fn redact(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => text
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One TLS crypto provider for the whole process: ring, which ureq already uses. Two
/// providers in one process make rustls refuse to pick ("Could not automatically
/// determine the process-level CryptoProvider"); installing one first settles it.
pub fn install_crypto() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // Err only when a provider is installed already: that one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The runtime every blocking call here runs on: small, shared, started at first use.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("facebatch-store")
            .enable_all()
            .build()
            .expect("the object-store runtime starts")
    })
}

/// Runs `f` to completion from a thread that is not itself driving async work (a stage
/// thread, the command's main thread).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().handle().block_on(f)
}

/// Spawns `f` on the shared runtime.
pub fn spawn<F>(f: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime().spawn(f)
}

/// An object store error as one line without the crate's wrapping, for messages.
pub fn clean(e: &object_store::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    redact_all(&one_line(&text))
}

/// A store's XML error body (`<Error><Code>NoSuchBucket</Code><Message>…`) as `NoSuchBucket:
/// …`, and the whole text on one line.
fn one_line(text: &str) -> String {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].to_string())
    };
    let text = match (
        text.find("<?xml").or_else(|| text.find("<Error>")),
        tag("Code"),
    ) {
        (Some(at), Some(code)) => {
            let message = tag("Message").unwrap_or_default();
            format!("{}{code}: {message}", &text[..at])
        }
        _ => text.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Drops query strings from every URL in `text` (signatures, SAS tokens).
fn redact_all(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            if w.contains("://") && w.contains('?') {
                w.split('?').next().unwrap_or_default().to_string()
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A fatal error about `url`'s store: no credentials, no such bucket, an endpoint that
/// does not answer. Exit 2, one message.
pub fn fatal(url: &ObjectUrl, doing: &str, e: &object_store::Error) -> Error {
    let hint = match e {
        object_store::Error::Unauthenticated { .. } => {
            " (no valid credentials: see docs/operations.md, \"Credentials\")"
        }
        object_store::Error::PermissionDenied { .. } => {
            " (the credentials may not do this: check the bucket policy or role)"
        }
        object_store::Error::NotFound { .. } => " (is the bucket's name right?)",
        _ => "",
    };
    Error::Store {
        url: url.to_string(),
        reason: format!("{doing}: {}{hint}", clean(e)),
    }
}

/// Whether `e` says the bucket (or container) itself is missing, not just one key.
pub fn no_such_bucket(e: &object_store::Error) -> bool {
    let t = clean(e);
    t.contains("NoSuchBucket")
        || t.contains("ContainerNotFound")
        || t.contains("bucket does not exist")
}

/// Lists every object below `url` (a prefix), page by page as the store returns them
/// (S3 gives 1,000 keys a page and a continuation token), in key order.
pub fn list(url: &ObjectUrl) -> Result<ObjectList> {
    if !url.scheme.lists() {
        return Err(Error::InvalidOption(format!(
            "{url}: an HTTP URL names one object and cannot be listed; name each image, or \
             list their URLs in a .txt or .csv manifest"
        )));
    }
    let store = url.store()?;
    let prefix = url.path();
    let stream = store.list(if url.key.is_empty() {
        None
    } else {
        Some(&prefix)
    });
    Ok(ObjectList {
        stream,
        url: url.clone(),
        store,
        first: true,
    })
}

/// The objects of a listing, fetched a page at a time.
pub struct ObjectList {
    stream: futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>>,
    url: ObjectUrl,
    pub store: Arc<dyn ObjectStore>,
    first: bool,
}

impl Iterator for ObjectList {
    type Item = Result<ObjectMeta>;
    fn next(&mut self) -> Option<Result<ObjectMeta>> {
        let item = block_on(self.stream.next())?;
        let first = std::mem::replace(&mut self.first, false);
        Some(item.map_err(|e| {
            fatal(
                &self.url,
                if first {
                    "cannot list it"
                } else {
                    "listing failed part-way"
                },
                &e,
            )
        }))
    }
}

/// The metadata of one object, `None` when there is none at `url`.
pub fn head(url: &ObjectUrl) -> Result<Option<ObjectMeta>> {
    let store = url.store()?;
    match block_on(store.head(&url.path())) {
        Ok(m) => Ok(Some(m)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(fatal(url, "cannot read it", &e)),
    }
}

/// Reads a whole object.
pub async fn get(store: &dyn ObjectStore, path: &ObjectPath) -> object_store::Result<Bytes> {
    store.get(path).await?.bytes().await
}

/// Reads a whole object, blocking.
pub fn get_blocking(url: &ObjectUrl) -> Result<Option<Bytes>> {
    let store = url.store()?;
    match block_on(get(store.as_ref(), &url.path())) {
        Ok(b) => Ok(Some(b)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(fatal(url, "cannot read it", &e)),
    }
}

/// Writes `bytes` to `url` in one PUT (atomic on every store: readers see the old object or
/// the new one). `create` makes it create-only: `Ok(false)` when the object exists.
pub fn put(url: &ObjectUrl, bytes: Bytes, create: bool) -> Result<bool> {
    let store = url.store()?;
    let opts = PutOptions {
        mode: if create {
            PutMode::Create
        } else {
            PutMode::Overwrite
        },
        ..Default::default()
    };
    match block_on(store.put_opts(&url.path(), PutPayload::from(bytes), opts)) {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) if create => Ok(false),
        Err(e) => Err(fatal(url, "cannot write it", &e)),
    }
}

/// Uploads a local file to `url`: one PUT when small, else a multipart upload whose object
/// appears only when the upload completes; a failed upload is aborted, leaving nothing.
pub fn upload(local: &std::path::Path, url: &ObjectUrl) -> Result<u64> {
    use std::io::Read;
    let store = url.store()?;
    let mut file = fs_err::File::open(local)?;
    let len = file.metadata()?.len();
    block_on(async {
        let mut writer = object_store::buffered::BufWriter::with_capacity(
            store.clone(),
            url.path(),
            MULTIPART_PART,
        );
        let mut buf = vec![0u8; MULTIPART_PART];
        let result: Result<()> = async {
            loop {
                let n = file
                    .read(&mut buf)
                    .map_err(|e| Error::io(format!("reading {}", local.display()), e))?;
                if n == 0 {
                    break;
                }
                crate::failpoint::hit("upload-part")?;
                writer
                    .put(Bytes::copy_from_slice(&buf[..n]))
                    .await
                    .map_err(|e| fatal(url, "uploading it failed", &e))?;
            }
            tokio::io::AsyncWriteExt::shutdown(&mut writer)
                .await
                .map_err(|e| Error::Store {
                    url: url.to_string(),
                    reason: format!("completing the upload failed: {e}"),
                })
        }
        .await;
        if result.is_err() {
            // Nothing half-written stays behind: the upload's parts are discarded.
            let _ = writer.abort().await;
        }
        result
    })?;
    Ok(len)
}

/// Multipart uploads send parts of this size (S3's minimum is 5 MiB).
pub const MULTIPART_PART: usize = 8 * 1024 * 1024;

/// Downloads `url` to a local file (a temporary name, then a rename). `false` when there is
/// no object there.
pub fn download(url: &ObjectUrl, local: &std::path::Path) -> Result<bool> {
    let Some(bytes) = get_blocking(url)? else {
        return Ok(false);
    };
    let dir = local.parent().unwrap_or(std::path::Path::new("."));
    fs_err::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Error::io(format!("writing {}", local.display()), e))?;
    std::io::Write::write_all(&mut tmp, &bytes)
        .map_err(|e| Error::io(format!("writing {}", local.display()), e))?;
    tmp.persist(local)
        .map_err(|e| Error::io(format!("writing {}", local.display()), e.error))?;
    Ok(true)
}

/// Downloads an output for reading (`report`): one object into `dir`, or every `.parquet`
/// object below a prefix (a dataset), keeping their layout. Returns the local path to read.
pub fn fetch_output(url: &ObjectUrl, dir: &std::path::Path) -> Result<std::path::PathBuf> {
    if !url.is_prefix() {
        let local = dir.join(url.file_name());
        if !download(url, &local)? {
            return Err(Error::InvalidOption(format!("{url} does not exist")));
        }
        return Ok(local);
    }
    let root = dir.join("dataset");
    fs_err::create_dir_all(&root)?;
    let prefix = url.path().to_string();
    for meta in list(url)? {
        let key = meta?.location.to_string();
        let rel = key
            .strip_prefix(&prefix)
            .unwrap_or(&key)
            .trim_start_matches('/')
            .to_string();
        // What a dataset reader reads: Parquet files outside `_`-folders (staging, index).
        if !rel.ends_with(".parquet") || rel.split('/').any(|s| s.starts_with(['_', '.'])) {
            continue;
        }
        download(&url.with_key(key), &root.join(&rel))?;
    }
    Ok(root)
}

/// Deletes the object at `url`; a missing one is fine.
pub fn delete(url: &ObjectUrl) -> Result<()> {
    let store = url.store()?;
    match block_on(store.delete(&url.path())) {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(fatal(url, "cannot delete it", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_by_scheme_and_paths_are_not_urls() {
        let u = ObjectUrl::parse("s3://bucket/photos/2024/")
            .unwrap()
            .unwrap();
        assert_eq!((u.scheme, u.bucket.as_str()), (Scheme::S3, "bucket"));
        assert_eq!(u.key, "photos/2024/");
        assert!(u.is_prefix());
        assert_eq!(u.path().as_ref(), "photos/2024");
        let g = ObjectUrl::parse("gs://b/x.jpg").unwrap().unwrap();
        assert_eq!(
            (g.scheme, g.file_name(), g.is_prefix()),
            (Scheme::Gcs, "x.jpg", false)
        );
        let a = ObjectUrl::parse("az://container/k/").unwrap().unwrap();
        assert_eq!((a.scheme, a.bucket.as_str()), (Scheme::Azure, "container"));
        let h = ObjectUrl::parse("https://host:8443/a/b%20c.jpg?sig=SECRET")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.scheme, h.bucket.as_str(), h.key.as_str()),
            (Scheme::Http, "host:8443", "a/b c.jpg")
        );
        assert!(!h.to_string().contains("SECRET"), "{h}");
        assert!(!format!("{h:?}").contains("SECRET"));
        assert!(ObjectUrl::parse("photos/2024").is_none());
        assert!(ObjectUrl::parse("C:\\photos").is_none());
        assert!(ObjectUrl::parse("ftp://host/x").unwrap().is_err());
        assert!(ObjectUrl::parse("s3:///key").unwrap().is_err());
        let out = ObjectUrl::parse("s3://b/x/out.parquet").unwrap().unwrap();
        assert_eq!(
            out.sibling(".out.parquet.lock").to_string(),
            "s3://b/x/.out.parquet.lock"
        );
    }

    #[test]
    fn every_scheme_reaches_its_builder() {
        // Builders read the environment; with none of it they still build (S3, HTTP) or say
        // what is missing in one message without a panic (GCS, Azure need an account).
        for (text, scheme) in [
            ("s3://facebatch-unit/x/", Scheme::S3),
            ("gs://facebatch-unit/x/", Scheme::Gcs),
            ("az://facebatch-unit/x/", Scheme::Azure),
            ("https://127.0.0.1:9/x.jpg", Scheme::Http),
        ] {
            let u = ObjectUrl::parse(text).unwrap().unwrap();
            assert_eq!(u.scheme, scheme);
            match u.store() {
                Ok(s) => assert!(!s.to_string().is_empty()),
                Err(e) => {
                    let m = e.to_string();
                    assert!(m.contains(scheme.service()), "{m}");
                }
            }
        }
    }

    #[test]
    fn a_tls_request_needs_no_second_provider() {
        // An HTTPS request to a closed port: a connection error, never rustls's panic
        // about picking a crypto provider.
        let u = ObjectUrl::parse("https://127.0.0.1:9/x.jpg")
            .unwrap()
            .unwrap();
        let err = get_blocking(&u).unwrap_err().to_string();
        assert!(err.contains("127.0.0.1:9"), "{err}");
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(redact("https://u:p@h/x?sig=1"), "https://h/x");
        let text = redact_all("error at https://h/x?X-Amz-Signature=abc denied");
        assert_eq!(text, "error at https://h/x denied");
    }
}
