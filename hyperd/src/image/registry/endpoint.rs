//! How a registry host is reached: its scheme (HTTPS, or for insecure and loopback hosts
//! whatever the probe finds), the roots it is verified against (`<certs_dir>/<host>/*.crt`),
//! and the per-host, per-credentials oci-client clients that carry the token caches.

use std::net::IpAddr;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};

use super::{
    CONNECT_TIMEOUT, Credentials, DOCKER_HUB_HOST, Error, MAX_CLIENTS, PROBE_TIMEOUT, READ_TIMEOUT,
    Registry, Result, chain,
};
use crate::image::Reference;
use crate::image::reference::DOCKER_HUB;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Scheme {
    Http,
    Https,
}

/// One registry host as we reach it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Endpoint {
    /// `host[:port]`, as it goes into URLs.
    pub(super) host: String,
    pub(super) scheme: Scheme,
    /// Skip certificate verification (insecure registries over HTTPS).
    pub(super) skip_verify: bool,
}

impl Endpoint {
    pub(super) fn url(&self, path: &str) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{scheme}://{}{path}", self.host)
    }

    pub(super) fn unreachable(&self, e: &reqwest::Error) -> Error {
        Error::Unreachable(format!("registry {}: {}", self.host, chain(e)))
    }

    pub(super) fn reference(&self, r: &Reference) -> oci_client::Reference {
        let repository = r.repository();
        match (&r.digest, r.tag.as_str()) {
            (Some(digest), "") => {
                oci_client::Reference::with_digest(self.host.clone(), repository, digest.clone())
            }
            (Some(digest), tag) => oci_client::Reference::with_tag_and_digest(
                self.host.clone(),
                repository,
                tag.into(),
                digest.clone(),
            ),
            (None, tag) => {
                oci_client::Reference::with_tag(self.host.clone(), repository, tag.into())
            }
        }
    }
}

/// What an operation is about, naming the host when it is not in the reference (a mirror,
/// Docker Hub).
pub(super) fn subject(ep: &Endpoint, r: &Reference, thing: String) -> String {
    if ep.host == r.registry() {
        thing
    } else {
        format!("{thing} from {}", ep.host)
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct ClientKey {
    endpoint: Endpoint,
    credentials: Credentials,
}

impl Registry {
    /// How `registry` (`host[:port]` or `docker.io`) is reached.
    pub(super) async fn endpoint(&self, registry: &str) -> Result<Endpoint> {
        let host = if registry == DOCKER_HUB {
            self.config.docker_hub_host.as_str()
        } else {
            registry
        };
        let ca_present = !self.ca_certificates(host)?.is_empty();
        let listed = self.config.insecure.iter().any(|h| h == host);
        if !listed && (ca_present || !is_loopback(host)) {
            return Ok(Endpoint {
                host: host.into(),
                scheme: Scheme::Https,
                skip_verify: false,
            });
        }
        let known = self
            .schemes
            .lock()
            .expect("schemes lock")
            .get(host)
            .copied();
        let scheme = match known {
            Some(scheme) => scheme,
            None => self.probe(host).await?,
        };
        Ok(Endpoint {
            host: host.into(),
            scheme,
            skip_verify: scheme == Scheme::Https,
        })
    }

    /// HTTPS (unverified) if the host answers it, else plain HTTP. Remembered once either
    /// answers; a host that answers neither is tried over HTTP (and the request says why).
    async fn probe(&self, host: &str) -> Result<Scheme> {
        for scheme in [Scheme::Https, Scheme::Http] {
            let ep = Endpoint {
                host: host.into(),
                scheme,
                skip_verify: true,
            };
            let http = self.http_client(&ep)?;
            let answered = http.get(ep.url("/v2/")).timeout(PROBE_TIMEOUT).send().await;
            match answered {
                Ok(_) => {
                    self.schemes
                        .lock()
                        .expect("schemes lock")
                        .insert(host.into(), scheme);
                    return Ok(scheme);
                }
                Err(e) => tracing::debug!(host, ?scheme, "probe: {}", chain(&e)),
            }
        }
        Ok(Scheme::Http)
    }

    /// PEM files `<certs_dir>/<host>/*.crt`; none when the directory does not exist.
    fn ca_certificates(&self, host: &str) -> Result<Vec<Vec<u8>>> {
        let dir = self.config.certs_dir.join(host);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Read {
                    path: dir.display().to_string(),
                    source,
                });
            }
        };
        let mut certs = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|source| Error::Read {
                    path: dir.display().to_string(),
                    source,
                })?
                .path();
            if path.extension().is_some_and(|e| e == "crt") {
                certs.push(std::fs::read(&path).map_err(|source| Error::Read {
                    path: path.display().to_string(),
                    source,
                })?);
            }
        }
        Ok(certs)
    }

    /// A plain reqwest client for `ep` (probes, login, error reasons), with the TLS settings
    /// the oci-client of `ep` gets.
    pub(super) fn http_client(&self, ep: &Endpoint) -> Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .danger_accept_invalid_certs(ep.skip_verify);
        let mut roots = Vec::new();
        for pem in self.ca_certificates(&ep.host)? {
            roots.push(reqwest::Certificate::from_pem(&pem).map_err(|e| {
                Error::InvalidInput(format!(
                    "{}/{}: not a PEM certificate: {e}",
                    self.config.certs_dir.display(),
                    ep.host
                ))
            })?);
        }
        if !roots.is_empty() {
            builder = builder.tls_certs_merge(roots);
        }
        builder.build().map_err(|e| {
            Error::Unreachable(format!(
                "registry {}: build HTTP client: {}",
                ep.host,
                chain(&e)
            ))
        })
    }

    /// The oci-client client for `ep` and `creds`, with the credentials stored in it.
    pub(super) async fn client(
        &self,
        ep: &Endpoint,
        creds: &Credentials,
    ) -> Result<oci_client::Client> {
        let key = ClientKey {
            endpoint: ep.clone(),
            credentials: creds.clone(),
        };
        if let Some(client) = self.clients.lock().expect("clients lock").get(&key) {
            return Ok(client.clone());
        }
        let auth = creds.to_oci()?;
        let extra_root_certificates = self
            .ca_certificates(&ep.host)?
            .into_iter()
            .map(|data| Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            })
            .collect();
        let config = ClientConfig {
            protocol: match ep.scheme {
                Scheme::Http => ClientProtocol::Http,
                Scheme::Https => ClientProtocol::Https,
            },
            accept_invalid_certificates: ep.skip_verify,
            extra_root_certificates,
            use_monolithic_push: true,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..ClientConfig::default()
        };
        let client = oci_client::Client::try_from(config).map_err(|e| {
            Error::InvalidInput(format!(
                "registry {}: client configuration: {}",
                ep.host,
                chain(&e)
            ))
        })?;
        client.store_auth_if_needed(&ep.host, &auth).await;
        let mut clients = self.clients.lock().expect("clients lock");
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// `http[s]://host[:port][/]`.
pub(super) fn parse_mirror(m: &str) -> Result<Endpoint> {
    let bad = || {
        Error::InvalidInput(format!(
            "registry mirror {m:?}: must be http[s]://host[:port]"
        ))
    };
    let (scheme, rest) = if let Some(rest) = m.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = m.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(bad());
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty()
        || host.contains(['/', '?', '#', '@'])
        || host.chars().any(char::is_whitespace)
    {
        return Err(bad());
    }
    Ok(Endpoint {
        host: host.into(),
        scheme,
        skip_verify: false,
    })
}

/// The registry a `POST /auth` `serveraddress` names: scheme and path dropped, Docker Hub's
/// spellings (and empty) to `docker.io`.
pub(super) fn login_registry(server_address: &str) -> Result<String> {
    let s = server_address.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or_default();
    let bad = || {
        Error::InvalidInput(format!(
            "server address {server_address:?}: must be host[:port]"
        ))
    };
    if host.contains(['?', '#', '@']) || host.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    Ok(match host {
        "" | "docker.io" | "index.docker.io" | DOCKER_HUB_HOST => DOCKER_HUB.into(),
        host => host.into(),
    })
}

/// `localhost`, 127.0.0.0/8 or `::1`, with or without a port: insecure by default, as Docker.
pub(super) fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        }),
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_and_loopback_hosts() {
        for (address, registry) in [
            ("", "docker.io"),
            ("https://index.docker.io/v1/", "docker.io"),
            ("docker.io", "docker.io"),
            ("127.0.0.1:5000", "127.0.0.1:5000"),
            ("http://localhost:5000/", "localhost:5000"),
        ] {
            assert_eq!(login_registry(address).unwrap(), registry, "{address:?}");
        }
        assert!(login_registry("a b").is_err());
        for (host, loopback) in [
            ("localhost", true),
            ("localhost:5000", true),
            ("127.0.0.1:5000", true),
            ("127.1.2.3", true),
            ("[::1]:5000", true),
            ("10.0.0.1:5000", false),
            ("quay.io", false),
        ] {
            assert_eq!(is_loopback(host), loopback, "{host}");
        }
    }

    #[test]
    fn mirrors_are_urls_of_hosts() {
        let ep = parse_mirror("http://127.0.0.1:5001/").unwrap();
        assert_eq!(
            (ep.host.as_str(), ep.scheme),
            ("127.0.0.1:5001", Scheme::Http)
        );
        let ep = parse_mirror("https://mirror.example").unwrap();
        assert_eq!(
            (ep.host.as_str(), ep.scheme),
            ("mirror.example", Scheme::Https)
        );
        for bad in [
            "mirror.example",
            "https://",
            "https://m.example/path",
            "ftp://m.example",
        ] {
            let err = parse_mirror(bad).unwrap_err();
            assert!(
                err.to_string().contains("must be http[s]://host[:port]"),
                "{bad}: {err}"
            );
        }
    }
}
