//! DNS-rebinding protection for everything served over HTTP: which `Host` and
//! `Origin` headers a request may carry, and the middleware that answers 403 to the
//! rest.
//!
//! A web page on another site can make a browser send requests to a server on
//! localhost (by pointing its own DNS name at 127.0.0.1); such requests carry that
//! site's name in `Host` and its origin in `Origin`. So:
//! - `Host` must name a loopback host (`localhost`, `127.0.0.1`, `[::1]`), the IP
//!   address flotilla listens on, or a name given with `--allow-host`; any IP address
//!   when it listens on all interfaces (an IP literal cannot be rebound). Ports are
//!   not compared: a reverse proxy may use its own. A `Host` (or `Origin`) with
//!   userinfo (`evil.example@127.0.0.1`) is refused, whatever host follows the `@`.
//! - `Origin`, when present (browsers send it; other clients do not), must be the
//!   server's own origin (`http://` + the request's `Host`) or one given with
//!   `--allow-origin`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header, uri::Authority};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// A `--allow-host` or `--allow-origin` value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(
        "--allow-origin `{0}` is not an origin: give scheme://host[:port], e.g. http://localhost:3000"
    )]
    Origin(String),
    #[error("--allow-host `{0}` is not a host name: give a name such as flotilla.example.com")]
    Host(String),
}

/// `scheme://host:port`, normalised: lower case, no brackets, default port filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn parse(value: &str) -> Option<Self> {
        let uri: axum::http::Uri = value.trim().parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return None;
        }
        let authority = uri.authority()?;
        if authority.as_str().contains('@') {
            return None;
        }
        Some(Self {
            host: normalise_host(authority.host()),
            port: authority.port_u16().unwrap_or(default_port),
            scheme,
        })
    }
}

fn normalise_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// The Host and Origin policy for one listener.
#[derive(Debug)]
pub struct Guard {
    /// Allowed host names, normalised.
    names: Vec<String>,
    /// Any IP literal is allowed (listening on all interfaces).
    any_ip: bool,
    origins: Vec<Origin>,
}

impl Guard {
    pub fn new(
        listen: SocketAddr,
        allow_hosts: &[String],
        allow_origins: &[String],
    ) -> Result<Self, GuardError> {
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let any_ip = listen.ip().is_unspecified();
        if !any_ip {
            names.push(normalise_host(&listen.ip().to_string()));
        }
        for h in allow_hosts {
            let authority: Authority = h.trim().parse().map_err(|_| GuardError::Host(h.clone()))?;
            names.push(normalise_host(authority.host()));
        }
        let origins = allow_origins
            .iter()
            .map(|o| Origin::parse(o).ok_or_else(|| GuardError::Origin(o.clone())))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            names,
            any_ip,
            origins,
        })
    }

    /// Ok, or why the request is refused.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or("no usable Host header")?;
        // `evil.example@127.0.0.1` parses as an authority naming 127.0.0.1; a Host
        // never carries userinfo, so one that does is refused outright.
        if host.contains('@') {
            return Err(format!("Host `{host}` carries userinfo"));
        }
        let authority: Authority = host
            .parse()
            .map_err(|_| format!("malformed Host `{host}`"))?;
        let name = normalise_host(authority.host());
        let host_ok = self.names.contains(&name) || (self.any_ip && name.parse::<IpAddr>().is_ok());
        if !host_ok {
            return Err(format!("Host `{host}` is not this server"));
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or("<not text>");
        let parsed = Origin::parse(origin);
        let own = Origin {
            scheme: "http".into(),
            host: name,
            port: authority.port_u16().unwrap_or(80),
        };
        match parsed {
            Some(o) if o == own || self.origins.contains(&o) => Ok(()),
            _ => Err(format!(
                "Origin `{origin}` is not allowed (add it with --allow-origin)"
            )),
        }
    }
}

/// Middleware: 403 for a foreign `Host` or `Origin`.
pub async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    match guard.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(why) => {
            tracing::warn!(method = %request.method(), path = %request.uri().path(), "403: {why}");
            (StatusCode::FORBIDDEN, format!("Forbidden: {why}\n")).into_response()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn req(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(host) = host {
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        if let Some(origin) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        h
    }

    fn loopback() -> Guard {
        Guard::new(
            "127.0.0.1:7777".parse().unwrap(),
            &[],
            &[
                "http://localhost:3000".into(),
                "https://app.example.com".into(),
            ],
        )
        .unwrap()
    }

    #[test]
    fn hosts() {
        let g = loopback();
        for ok in [
            "127.0.0.1:7777",
            "localhost:7777",
            "LOCALHOST",
            "[::1]:7777",
            "localhost.:1",
        ] {
            assert!(g.check(&req(Some(ok), None)).is_ok(), "{ok}");
        }
        for bad in [
            "evil.example.com",
            "evil.example.com:7777",
            "10.0.0.1:7777",
            "127.0.0.1.nip.io",
            "evil.example.com@127.0.0.1:7777",
            "@localhost:7777",
        ] {
            assert!(g.check(&req(Some(bad), None)).is_err(), "{bad}");
        }
        assert!(g.check(&req(None, None)).is_err());
    }

    #[test]
    fn origins() {
        let g = loopback();
        let host = Some("127.0.0.1:7777");
        for ok in [
            "http://127.0.0.1:7777",
            "http://localhost:3000",
            "https://app.example.com",
            "https://APP.example.com:443",
        ] {
            assert!(g.check(&req(host, Some(ok))).is_ok(), "{ok}");
        }
        for bad in [
            "http://evil.example.com",
            "http://localhost:7777",
            "http://127.0.0.1:7778",
            "https://127.0.0.1:7777",
            "null",
            "http://app.example.com",
            "http://evil.example.com@127.0.0.1:7777",
        ] {
            assert!(g.check(&req(host, Some(bad))).is_err(), "{bad}");
        }
        // Same origin follows the Host the client used.
        assert!(
            g.check(&req(Some("localhost:7777"), Some("http://localhost:7777")))
                .is_ok()
        );
    }

    #[test]
    fn listening_everywhere_allows_ip_literals_and_named_hosts() {
        let g = Guard::new(
            "0.0.0.0:7777".parse().unwrap(),
            &["fleet.example.com".into()],
            &[],
        )
        .unwrap();
        for ok in [
            "192.168.1.5:7777",
            "[fe80::1]:7777",
            "fleet.example.com",
            "localhost",
        ] {
            assert!(g.check(&req(Some(ok), None)).is_ok(), "{ok}");
        }
        assert!(g.check(&req(Some("evil.example.com:7777"), None)).is_err());
        let specific = Guard::new("192.168.1.5:7777".parse().unwrap(), &[], &[]).unwrap();
        assert!(specific.check(&req(Some("192.168.1.5:7777"), None)).is_ok());
        assert!(
            specific
                .check(&req(Some("192.168.1.6:7777"), None))
                .is_err()
        );
    }

    #[test]
    fn bad_allow_values_are_refused() {
        let listen = "127.0.0.1:1".parse().unwrap();
        for bad in [
            "localhost:3000",
            "ftp://x.example",
            "http://x.example/path",
            "",
        ] {
            assert!(Guard::new(listen, &[], &[bad.into()]).is_err(), "{bad}");
        }
        assert!(Guard::new(listen, &["a b".into()], &[]).is_err());
    }
}
