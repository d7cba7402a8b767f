//! Where a TestRail instance lives: a Cloud subdomain or a TestRail Server URL.

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseUrlError {
    #[error(
        "{0:?} is not a valid TestRail subdomain: use letters, digits and hyphens, e.g. `company` for company.testrail.io"
    )]
    InvalidSubdomain(String),
    #[error("{0:?} is not a valid URL")]
    InvalidUrl(String),
    #[error(
        "{0} uses plain http; TestRail must be reached over https (plain http is only allowed for loopback addresses or when explicitly allowed)"
    )]
    InsecureScheme(String),
    #[error("{0} must not contain a user name or password; credentials are given separately")]
    CredentialsInUrl(String),
    #[error("{0}: only http and https URLs are supported")]
    UnsupportedScheme(String),
}

/// The base address of a TestRail instance, without `/index.php`.
#[derive(Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `scheme://host[:port][/subpath]` with no trailing slash.
    base: String,
    host: String,
    cloud: bool,
}

const CLOUD_SUFFIXES: &[&str] = &[".testrail.io", ".testrail.com", ".testrail.net"];

fn valid_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl BaseUrl {
    /// A TestRail Cloud instance from its subdomain (`company` for company.testrail.io). A pasted
    /// address such as `https://company.testrail.io/` (or `.testrail.com` / `.testrail.net`) is
    /// understood and its host kept.
    pub fn cloud(input: &str) -> Result<Self, BaseUrlError> {
        let trimmed = input.trim();
        let without_scheme = trimmed
            .strip_prefix("https://")
            .or_else(|| trimmed.strip_prefix("http://"))
            .unwrap_or(trimmed);
        let host = without_scheme
            .split(['/', '?', '#'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        for suffix in CLOUD_SUFFIXES {
            if let Some(sub) = host.strip_suffix(suffix) {
                if valid_subdomain(sub) {
                    return Ok(Self {
                        base: format!("https://{host}"),
                        host,
                        cloud: true,
                    });
                }
                return Err(BaseUrlError::InvalidSubdomain(trimmed.to_string()));
            }
        }
        if without_scheme != trimmed
            || host.contains('.')
            || host != without_scheme.to_ascii_lowercase()
        {
            return Err(BaseUrlError::InvalidSubdomain(trimmed.to_string()));
        }
        if !valid_subdomain(&host) {
            return Err(BaseUrlError::InvalidSubdomain(trimmed.to_string()));
        }
        let host = format!("{host}.testrail.io");
        Ok(Self {
            base: format!("https://{host}"),
            host,
            cloud: true,
        })
    }

    /// A TestRail Server (self-hosted) address such as `https://testrail.example.com/testrail`.
    /// Plain `http` is accepted only for loopback addresses, or everywhere when `allow_http`.
    pub fn server(input: &str, allow_http: bool) -> Result<Self, BaseUrlError> {
        let trimmed = input.trim();
        let url = Url::parse(trimmed).map_err(|_| BaseUrlError::InvalidUrl(trimmed.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(BaseUrlError::CredentialsInUrl(redact_userinfo(&url)));
        }
        let host = match url.host() {
            Some(h) => h,
            None => return Err(BaseUrlError::InvalidUrl(trimmed.to_string())),
        };
        let loopback = match &host {
            Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
            Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
            Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback || allow_http => {}
            "http" => return Err(BaseUrlError::InsecureScheme(trimmed.to_string())),
            _ => return Err(BaseUrlError::UnsupportedScheme(trimmed.to_string())),
        }
        let host_str = host.to_string().to_ascii_lowercase();
        let mut path = url.path().trim_end_matches('/').to_string();
        if let Some(p) = path.strip_suffix("/index.php") {
            path = p.to_string();
        }
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let cloud = CLOUD_SUFFIXES.iter().any(|s| host_str.ends_with(s));
        Ok(Self {
            base: format!("{}://{host_str}{port}{path}", url.scheme()),
            host: host_str,
            cloud,
        })
    }

    /// Either form: anything with a scheme, a dot, a colon or a slash is treated as a URL (a
    /// `*.testrail.io` address as Cloud), anything else as a Cloud subdomain.
    pub fn parse(input: &str, allow_http: bool) -> Result<Self, BaseUrlError> {
        let t = input.trim();
        let lower = t.to_ascii_lowercase();
        let host_part = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"))
            .unwrap_or(&lower)
            .split(['/', '?', '#', ':'])
            .next()
            .unwrap_or("")
            .to_string();
        if CLOUD_SUFFIXES.iter().any(|s| host_part.ends_with(s)) {
            return Self::cloud(t);
        }
        if t.contains("://") {
            return Self::server(t, allow_http);
        }
        if t.contains(['.', ':', '/']) {
            return Self::server(&format!("https://{t}"), allow_http);
        }
        Self::cloud(t)
    }

    /// The base address, e.g. `https://company.testrail.io`.
    pub fn as_str(&self) -> &str {
        &self.base
    }

    /// The host name (lower case), e.g. `company.testrail.io`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// True for TestRail Cloud hosts (`*.testrail.io`, `.com`, `.net`).
    pub fn is_cloud(&self) -> bool {
        self.cloud
    }

    /// The full URL of an API route such as `get_users&limit=250&offset=0`. TestRail's route
    /// is in the query string, so further parameters follow with `&`, never a second `?`.
    pub fn api_url(&self, route: &str) -> String {
        format!("{}/index.php?/api/v2/{route}", self.base)
    }
}

fn redact_userinfo(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BaseUrl({})", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_subdomains() {
        assert_eq!(
            BaseUrl::cloud("company").map(|b| b.base),
            Ok("https://company.testrail.io".into())
        );
        assert_eq!(
            BaseUrl::cloud(" Company ").map(|b| b.base),
            Ok("https://company.testrail.io".into())
        );
        assert_eq!(
            BaseUrl::cloud("https://acme-qa.testrail.io/index.php?/dashboard").map(|b| b.base),
            Ok("https://acme-qa.testrail.io".into())
        );
        assert_eq!(
            BaseUrl::cloud("acme.testrail.com/").map(|b| b.base),
            Ok("https://acme.testrail.com".into())
        );
        assert_eq!(
            BaseUrl::cloud("http://acme.testrail.net").map(|b| b.base),
            Ok("https://acme.testrail.net".into())
        );
        for bad in [
            "",
            "-acme",
            "acme-",
            "ac me",
            "acme.example.com",
            "acme_qa",
            "https://evil.com/acme",
            "a/b",
        ] {
            assert!(BaseUrl::cloud(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(BaseUrl::cloud("company").is_ok_and(|b| b.is_cloud()));
    }

    #[test]
    fn server_urls() {
        let b = BaseUrl::server("https://tr.example.com/testrail/index.php", false).expect("url");
        assert_eq!(b.as_str(), "https://tr.example.com/testrail");
        assert_eq!(
            b.api_url("get_users&limit=250&offset=0"),
            "https://tr.example.com/testrail/index.php?/api/v2/get_users&limit=250&offset=0"
        );
        assert!(!b.is_cloud());
        assert_eq!(
            BaseUrl::server("http://127.0.0.1:8095/", false).map(|b| b.base),
            Ok("http://127.0.0.1:8095".into())
        );
        assert!(BaseUrl::server("http://localhost:1", false).is_ok());
        assert!(BaseUrl::server("http://[::1]:1", false).is_ok());
        assert!(matches!(
            BaseUrl::server("http://tr.example.com", false),
            Err(BaseUrlError::InsecureScheme(_))
        ));
        assert!(BaseUrl::server("http://tr.example.com", true).is_ok());
        assert!(matches!(
            BaseUrl::server("https://me:pw@tr.example.com", false),
            Err(BaseUrlError::CredentialsInUrl(ref s)) if !s.contains("pw")
        ));
        assert!(BaseUrl::server("ftp://tr.example.com", false).is_err());
        assert!(BaseUrl::server("not a url", false).is_err());
    }

    #[test]
    fn parse_picks_the_form() {
        assert!(BaseUrl::parse("company", false).is_ok_and(|b| b.is_cloud()));
        assert!(BaseUrl::parse("https://company.testrail.io", false).is_ok_and(|b| b.is_cloud()));
        assert_eq!(
            BaseUrl::parse("tr.example.com/testrail", false).map(|b| b.base),
            Ok("https://tr.example.com/testrail".into())
        );
    }
}
