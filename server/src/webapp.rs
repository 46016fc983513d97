//! The volunteers' web app at `/app/` (issue 17): its page, style, icon, manifest and
//! service worker as `app/src` holds them, and what `scripts/build-app` makes of the rest
//! (the bundled script, automerge's WebAssembly, the build's version), all embedded in the
//! binary so a user of the server never runs npm. Each file is
//! gzipped once, at its first request, and served with an ETag; the service worker keeps
//! the shell for offline use, so these are fetched again only when the app changes.

use std::io::Write;
use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::app::AppState;

/// What the app may do: its own scripts and the WebAssembly compiled from its own file,
/// the API and `/sync` on this origin, nothing else.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
     connect-src 'self'; style-src 'self'; img-src 'self' data:; manifest-src 'self'; \
     worker-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    /// (gzip, ETag), made at the first request.
    prepared: OnceLock<(Vec<u8>, String)>,
}

macro_rules! asset {
    ($dir:literal, $name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!($dir, $name)),
            prepared: OnceLock::new(),
        }
    };
}

static ASSETS: [Asset; 8] = [
    asset!("../../app/src/", "index.html", "text/html; charset=utf-8"),
    asset!("../../app/src/", "app.css", "text/css; charset=utf-8"),
    asset!("../../app/src/", "sw.js", "text/javascript; charset=utf-8"),
    asset!(
        "../../app/src/",
        "manifest.webmanifest",
        "application/manifest+json"
    ),
    asset!("../../app/src/", "icon.svg", "image/svg+xml"),
    asset!("../assets/app/", "app.js", "text/javascript; charset=utf-8"),
    asset!("../assets/app/", "automerge.wasm", "application/wasm"),
    asset!(
        "../assets/app/",
        "version.js",
        "text/javascript; charset=utf-8"
    ),
];

impl Asset {
    fn prepared(&self) -> &(Vec<u8>, String) {
        self.prepared.get_or_init(|| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            // Writing to a Vec cannot fail.
            let gzip = gz
                .write_all(self.bytes)
                .and_then(|()| gz.finish())
                .unwrap_or_default();
            let etag = format!("\"{}\"", &hex::encode(Sha256::digest(self.bytes))[..32]);
            (gzip, etag)
        })
    }

    fn respond(&self, headers: &HeaderMap) -> Response {
        let (gzip, etag) = self.prepared();
        let mut res = if headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
        {
            StatusCode::NOT_MODIFIED.into_response()
        } else if accepts_gzip(headers) && !gzip.is_empty() {
            let mut res = gzip.clone().into_response();
            res.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            res
        } else {
            self.bytes.into_response()
        };
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        // Always asked again (cheaply, by ETag): an app that updates must not wait for a
        // cache to expire, and the service worker holds the offline copy anyway.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        if let Ok(v) = HeaderValue::from_str(etag) {
            h.insert(header::ETAG, v);
        }
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        res
    }
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            parts.next() == Some("gzip") && !parts.any(|p| p.replace(' ', "") == "q=0")
        })
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/app", get(|| async { Redirect::permanent("/app/") }))
        .route("/app/", get(index))
        .route("/app/{file}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    serve(&ASSETS[0], headers).await
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => serve(asset, headers).await,
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// Gzipping the WebAssembly takes a good part of a second: the first request for each
/// asset does it on a blocking worker, not on the thread that serves everyone else.
async fn serve(asset: &'static Asset, headers: HeaderMap) -> Response {
    if asset.prepared.get().is_none() {
        let _ = tokio::task::spawn_blocking(move || {
            asset.prepared();
        })
        .await;
    }
    asset.respond(&headers)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_and_compresses() {
        for asset in &ASSETS {
            assert!(!asset.bytes.is_empty(), "{} is empty", asset.name);
            let (gzip, etag) = asset.prepared();
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gzip[..]), &mut plain)
                .unwrap();
            assert_eq!(plain, asset.bytes, "{}", asset.name);
            assert_eq!(etag.len(), 34);
        }
    }

    #[test]
    fn gzip_is_sent_only_to_who_takes_it() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
            accepts_gzip(&h)
        };
        assert!(with("gzip, deflate, br"));
        assert!(with("br;q=1.0, gzip;q=0.8"));
        assert!(!with("gzip;q=0"));
        assert!(!with("br"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
