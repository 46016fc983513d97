//! What a push subscription may point at, and its keys. The server POSTs to whatever
//! endpoint a caller registers, so without these checks a subscription would be a way to
//! make the server send requests into its own network (SSRF): endpoints must be https on
//! a public address and not this server. `--allow-insecure-push-endpoints` lifts this for
//! tests with a push service on loopback.
//!
//! The checks run when a subscription is registered and again before every send; the
//! worker's HTTP client also refuses host names that resolve to non-public addresses
//! (`PublicResolver`), so a name cannot be pointed at 10.0.0.1 after it was accepted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Push services' endpoints are a few hundred characters; this leaves room for any.
pub const MAX_ENDPOINT_CHARS: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("is longer than {MAX_ENDPOINT_CHARS} characters")]
    TooLong,
    #[error("is not a URL")]
    NotAUrl,
    #[error("must be an https URL")]
    NotHttps,
    #[error("must not contain a user name or password")]
    Credentials,
    #[error("must not point at a loopback, private, link-local or otherwise non-public address")]
    NotPublic,
    #[error("must not point at this server")]
    ThisServer,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("must be base64url")]
    NotBase64,
    #[error("must be an uncompressed P-256 public key (65 bytes, starting with 0x04)")]
    NotAPoint,
    #[error("must be 16 bytes")]
    AuthLength,
}

/// Checks a subscription endpoint. `own_host` is the host name this server was reached
/// under (the request's `Host`), so nobody subscribes the server to itself.
pub fn check_endpoint(
    raw: &str,
    allow_insecure: bool,
    own_host: Option<&str>,
) -> Result<Url, EndpointError> {
    if raw.chars().count() > MAX_ENDPOINT_CHARS {
        return Err(EndpointError::TooLong);
    }
    let url = Url::parse(raw).map_err(|_| EndpointError::NotAUrl)?;
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure => {}
        _ => return Err(EndpointError::NotHttps),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::Credentials);
    }
    let host = url.host_str().ok_or(EndpointError::NotAUrl)?;
    if allow_insecure {
        return Ok(url);
    }
    // The URL parser has already normalised IP literals (`2130706433` is 127.0.0.1).
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        if !is_public_address(ip) {
            return Err(EndpointError::NotPublic);
        }
    } else {
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if is_local_name(&name) {
            return Err(EndpointError::NotPublic);
        }
        if let Some(own) = own_host.map(host_without_port)
            && own.trim_end_matches('.').eq_ignore_ascii_case(&name)
        {
            return Err(EndpointError::ThisServer);
        }
    }
    Ok(url)
}

/// `example.org:8443` -> `example.org`, `[::1]:80` -> `[::1]`.
fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Names that only mean something inside a network: single labels (intranet names),
/// `localhost` and the special-use domains for local networks.
fn is_local_name(name: &str) -> bool {
    !name.contains('.')
        || name == "localhost"
        || [".localhost", ".local", ".internal", ".home.arpa", ".lan"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
}

/// Whether an address is on the public internet: not loopback, private (RFC 1918, ULA),
/// link-local, shared (CGNAT), multicast, documentation, benchmarking or reserved.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible and other reserved ::/96
}

/// Decodes base64url, tolerating padding and the standard alphabet (some libraries
/// send those), and re-encodes it canonically.
fn decode_key(raw: &str, max_chars: usize) -> Result<Vec<u8>, KeyError> {
    if raw.len() > max_chars {
        return Err(KeyError::NotBase64);
    }
    let normal: String = raw
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD
        .decode(normal)
        .map_err(|_| KeyError::NotBase64)
}

/// Checks the subscription's keys and returns them as canonical base64url:
/// `p256dh` must be a point on P-256 (uncompressed, 65 bytes), `auth` 16 bytes.
/// The error says which field is at fault.
pub fn check_keys(p256dh: &str, auth: &str) -> Result<(String, String), (&'static str, KeyError)> {
    let point = decode_key(p256dh, 100).map_err(|e| ("keys.p256dh", e))?;
    if point.len() != 65 || point[0] != 0x04 || p256::PublicKey::from_sec1_bytes(&point).is_err() {
        return Err(("keys.p256dh", KeyError::NotAPoint));
    }
    let secret = decode_key(auth, 32).map_err(|e| ("keys.auth", e))?;
    if secret.len() != 16 {
        return Err(("keys.auth", KeyError::AuthLength));
    }
    Ok((
        URL_SAFE_NO_PAD.encode(point),
        URL_SAFE_NO_PAD.encode(secret),
    ))
}

/// The worker's DNS resolver: only public addresses, so an accepted host name that later
/// resolves into a private network is refused at connect time.
pub struct PublicResolver;

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public_address(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const POINT: &str =
        "BH1HTeKM7-NwaLGHEqxeu2IamQaVVLkcsFHPIHmsCnqxcBHPQBprF41bEMOr3O1hUQ2jU1opNEm1F_lZV_sxMP8";

    #[test]
    fn production_endpoints_must_be_public_https() {
        let ok = |u: &str| check_endpoint(u, false, Some("lotse.example.org"));
        assert!(ok("https://fcm.googleapis.com/fcm/send/abc:def").is_ok());
        assert!(ok("https://updates.push.services.mozilla.com/wpush/v2/gAAA").is_ok());
        assert!(ok("https://ntfy.example.net:8443/upAbc?up=1").is_ok());
        assert!(ok("https://8.8.8.8/push").is_ok());
        assert_eq!(
            ok("http://fcm.googleapis.com/x"),
            Err(EndpointError::NotHttps)
        );
        assert_eq!(ok("ftp://example.org/x"), Err(EndpointError::NotHttps));
        assert_eq!(ok("not a url"), Err(EndpointError::NotAUrl));
        assert_eq!(
            ok("https://user:pw@push.example.org/x"),
            Err(EndpointError::Credentials)
        );
        for private in [
            "https://127.0.0.1/x",
            "https://127.1.2.3:8443/x",
            "https://10.1.2.3/x",
            "https://172.16.0.1/x",
            "https://192.168.178.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/x",
            "https://0.0.0.0/x",
            "https://[::1]/x",
            "https://[fe80::1]/x",
            "https://[fd00::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://[64:ff9b::a00:1]/x",
            "https://localhost/x",
            "https://push.localhost/x",
            "https://printer.local/x",
            "https://intranet/x",
            "https://2130706433/x",
        ] {
            assert_eq!(ok(private), Err(EndpointError::NotPublic), "{private}");
        }
        assert_eq!(
            ok("https://LOTSE.example.org./push"),
            Err(EndpointError::ThisServer)
        );
        assert_eq!(
            check_endpoint(
                "https://lotse.example.org:8443/x",
                false,
                Some("lotse.example.org:443")
            ),
            Err(EndpointError::ThisServer)
        );
        let long = format!(
            "https://push.example.org/{}",
            "a".repeat(MAX_ENDPOINT_CHARS)
        );
        assert_eq!(ok(&long), Err(EndpointError::TooLong));
    }

    #[test]
    fn the_test_flag_allows_loopback_http() {
        let url = check_endpoint(
            "http://127.0.0.1:18081/push/1",
            true,
            Some("127.0.0.1:8080"),
        );
        assert_eq!(
            url.unwrap().origin().ascii_serialization(),
            "http://127.0.0.1:18081"
        );
        assert_eq!(
            check_endpoint("ftp://127.0.0.1/x", true, None),
            Err(EndpointError::NotHttps)
        );
    }

    #[test]
    fn keys_are_checked_and_normalised() {
        let (p, a) = check_keys(POINT, "sBXU5_tIYz-5w7G2B25BEw").unwrap();
        assert_eq!(p, POINT);
        assert_eq!(a, "sBXU5_tIYz-5w7G2B25BEw");
        // Padding and the standard alphabet are accepted and normalised.
        let (_, a) = check_keys(POINT, "sBXU5/tIYz+5w7G2B25BEw==").unwrap();
        assert_eq!(a, "sBXU5_tIYz-5w7G2B25BEw");
        assert_eq!(
            check_keys(&POINT[..80], "sBXU5_tIYz-5w7G2B25BEw"),
            Err(("keys.p256dh", KeyError::NotAPoint))
        );
        // 65 bytes starting with 4, but not on the curve.
        let off_curve = URL_SAFE_NO_PAD.encode([&[4u8][..], &[1u8; 64][..]].concat());
        assert_eq!(
            check_keys(&off_curve, "sBXU5_tIYz-5w7G2B25BEw"),
            Err(("keys.p256dh", KeyError::NotAPoint))
        );
        assert_eq!(
            check_keys(POINT, "sBXU5_tIYz-5w7G2B25B"),
            Err(("keys.auth", KeyError::AuthLength))
        );
        assert_eq!(
            check_keys(POINT, "not base64!"),
            Err(("keys.auth", KeyError::NotBase64))
        );
    }

    #[test]
    fn public_addresses() {
        assert!(is_public_address("8.8.8.8".parse().unwrap()));
        assert!(is_public_address("2a00:1450:4001::200e".parse().unwrap()));
        assert!(!is_public_address("192.0.2.1".parse().unwrap()));
        assert!(!is_public_address("198.18.0.1".parse().unwrap()));
        assert!(!is_public_address("255.255.255.255".parse().unwrap()));
        assert!(!is_public_address("2001:db8::1".parse().unwrap()));
        assert!(!is_public_address("ff02::1".parse().unwrap()));
    }
}
