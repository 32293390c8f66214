//! Files served from the public listener, embedded in the binary: the
//! browser client (`/redcast.js`, `/redcast.mjs`, `/redcast.d.ts`) and,
//! when enabled, the demo page (`/demo`). Each carries a strong ETag so
//! browsers revalidate cheaply (`If-None-Match` gets 304).

use crate::handshake::{text, Body};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use std::hash::{DefaultHasher, Hash, Hasher};

struct Asset {
    path: &'static str,
    body: &'static str,
    content_type: &'static str,
    /// Only served with the demo switched on.
    demo: bool,
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/redcast.js",
        body: include_str!("../client/redcast.js"),
        content_type: "text/javascript; charset=utf-8",
        demo: false,
    },
    Asset {
        path: "/redcast.mjs",
        body: include_str!("../client/redcast.mjs"),
        content_type: "text/javascript; charset=utf-8",
        demo: false,
    },
    Asset {
        path: "/redcast.d.ts",
        body: include_str!("../client/redcast.d.ts"),
        content_type: "text/plain; charset=utf-8",
        demo: false,
    },
    Asset {
        path: "/demo",
        body: include_str!("../client/demo.html"),
        content_type: "text/html; charset=utf-8",
        demo: true,
    },
];

/// Whether `path` names an asset (served or not, depending on `demo`).
pub fn is_asset(path: &str) -> bool {
    ASSETS.iter().any(|a| a.path == path)
}

fn etag(body: &str) -> String {
    // DefaultHasher::new() is deterministic: the same file, the same tag.
    let mut h = DefaultHasher::new();
    body.hash(&mut h);
    format!("\"{:016x}\"", h.finish())
}

/// Serves an asset, honouring `If-None-Match`.
pub fn serve(path: &str, request: &HeaderMap, demo: bool) -> Option<Response<Body>> {
    let asset = ASSETS
        .iter()
        .find(|a| a.path == path && (demo || !a.demo))?;
    let tag = etag(asset.body);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut resp = if fresh {
        text(StatusCode::NOT_MODIFIED, "")
    } else {
        text(StatusCode::OK, asset.body)
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Revalidate after an hour: a redcast upgrade ships a new client.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Some(resp)
}
