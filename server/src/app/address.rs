//! Who is on the other end of the TCP connection, as far as the rate limits care. Behind
//! the reverse proxy the README recommends every request comes from the proxy's address;
//! only from a proxy the operator named (`--trusted-proxy`) is `X-Forwarded-For` read,
//! because anyone else could write any address there.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use super::AppState;
use super::error::Error;

/// The client's address: the TCP peer, or, when that is a trusted proxy, the nearest
/// address in `X-Forwarded-For` that is not one of the trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    pub fn of(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> Self {
        if !trusted.contains(&peer) {
            return Self(peer);
        }
        // Each proxy appends the address it received from: read from the right, past
        // our own proxies, to the first hop we did not put there ourselves.
        let hop = forwarded_for
            .into_iter()
            .flat_map(|h| h.rsplit(','))
            .map(|a| a.trim().parse::<IpAddr>())
            .find(|a| !matches!(a, Ok(ip) if trusted.contains(ip)));
        match hop {
            Some(Ok(ip)) => Self(ip),
            // A hop that does not parse is not to be believed; the proxy is what we know.
            Some(Err(_)) | None => Self(peer),
        }
    }
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::Internal(anyhow::anyhow!("no peer address: {e}")))?;
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        Ok(Self::of(
            peer.ip(),
            forwarded,
            &state.config.trusted_proxies,
        ))
    }
}

/// The address people reach this server at, for links handed out (QR codes, e-mails):
/// `--public-url` when set, else the `Host` the request came in on (over https unless it
/// is this machine, or a proxy said `X-Forwarded-Proto`).
pub fn public_base(config: &crate::config::HttpConfig, headers: &axum::http::HeaderMap) -> String {
    if let Some(url) = &config.public_url {
        return url.clone();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "http" || *p == "https");
    let local =
        host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]");
    let proto = proto.unwrap_or(if local { "http" } else { "https" });
    format!("{proto}://{host}")
}

#[cfg(test)]
mod tests {
    use super::ClientAddr;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }

    #[test]
    fn forwarded_for_only_from_a_trusted_proxy() {
        let proxy = [ip("10.0.0.1")];
        let of = |peer: &str, header: Option<&str>| ClientAddr::of(ip(peer), header, &proxy).0;
        // Someone else's header is ignored.
        assert_eq!(of("203.0.113.9", Some("198.51.100.7")), ip("203.0.113.9"));
        // Through our proxy: the hop before it.
        assert_eq!(of("10.0.0.1", Some("198.51.100.7")), ip("198.51.100.7"));
        // A client that sends its own header cannot pick its address: the proxy appends.
        assert_eq!(
            of("10.0.0.1", Some("1.2.3.4, 198.51.100.7")),
            ip("198.51.100.7")
        );
        // Our proxy twice in the chain, garbage, or no header: the proxy's address.
        assert_eq!(
            of("10.0.0.1", Some("198.51.100.7, 10.0.0.1")),
            ip("198.51.100.7")
        );
        assert_eq!(of("10.0.0.1", Some("nonsense")), ip("10.0.0.1"));
        assert_eq!(of("10.0.0.1", None), ip("10.0.0.1"));
    }
}
