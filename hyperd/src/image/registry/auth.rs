//! Credentials for a registry: from Docker's `AuthConfig` and its `X-Registry-Auth` header;
//! the check `POST /auth` makes (the distribution spec's `GET /v2/`, then Basic auth or
//! Docker's token flow it challenges with: `GET realm` with Basic auth, or the OAuth2 refresh
//! grant `POST realm` for an identity token); and the registry's reason when it refuses.
//! Never logs a secret.

use std::fmt;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hyper_proto::rest::AuthConfig;
use reqwest::StatusCode;
use reqwest::header::WWW_AUTHENTICATE;

use super::{Endpoint, Error, Result};

/// How hyperd authenticates to a registry.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Credentials {
    Anonymous,
    /// HTTP Basic, or the username and password sent to the token service of a Bearer
    /// challenge.
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token a token service handed out at login (`identitytoken`),
    /// exchanged for a bearer token per repository and operation.
    IdentityToken(String),
    /// A bearer token sent as is (`registrytoken`).
    RegistryToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username:?}, <redacted>)"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credentials::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

/// base64 that takes the URL-safe and the standard alphabet, padded or not: Docker clients
/// send base64url, some older ones standard base64.
fn lenient_decode(s: &str) -> std::result::Result<Vec<u8>, base64::DecodeError> {
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&base64::alphabet::URL_SAFE, config)
        .decode(s)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::STANDARD, config).decode(s))
}

impl Credentials {
    /// `identitytoken`, then `registrytoken`, then `username`/`password`, then `auth`
    /// (base64 of `username:password`); none of them is [`Credentials::Anonymous`].
    /// Errors: an `auth` that is not base64 of `user:password`, a password without a user.
    pub fn from_auth_config(a: &AuthConfig) -> Result<Self> {
        if !a.identitytoken.is_empty() {
            return Ok(Credentials::IdentityToken(a.identitytoken.clone()));
        }
        if !a.registrytoken.is_empty() {
            return Ok(Credentials::RegistryToken(a.registrytoken.clone()));
        }
        if !a.username.is_empty() || !a.password.is_empty() {
            if a.username.is_empty() {
                return Err(Error::InvalidInput(
                    "auth config: a password without a username".into(),
                ));
            }
            return Ok(Credentials::Basic {
                username: a.username.clone(),
                password: a.password.clone(),
            });
        }
        if !a.auth.is_empty() {
            let bad =
                || Error::InvalidInput("auth config: auth is not base64 of user:password".into());
            let decoded = lenient_decode(a.auth.trim()).map_err(|_| bad())?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
            let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
            if username.is_empty() {
                return Err(bad());
            }
            return Ok(Credentials::Basic {
                username: username.into(),
                password: password.into(),
            });
        }
        Ok(Credentials::Anonymous)
    }

    /// The `X-Registry-Auth` header of pull and push: base64url (padded or not; standard
    /// base64 is accepted too) of a JSON [`AuthConfig`]. Empty, or `{}`, is anonymous.
    /// Errors: [`Error::InvalidInput`] when it is not base64 or not that JSON.
    pub fn from_header(value: &str) -> Result<Self> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(Credentials::Anonymous);
        }
        let json = lenient_decode(value).map_err(|e| {
            Error::InvalidInput(format!("X-Registry-Auth: not base64url-encoded JSON: {e}"))
        })?;
        let config: AuthConfig = serde_json::from_slice(&json).map_err(|e| {
            Error::InvalidInput(format!(
                "X-Registry-Auth: not an auth config JSON object: {e}"
            ))
        })?;
        Self::from_auth_config(&config)
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self, Credentials::Anonymous)
    }

    /// What oci-client sends. An identity token must have been exchanged for a bearer token
    /// first (see `Registry::exchange`).
    pub(super) fn to_oci(&self) -> Result<oci_client::secrets::RegistryAuth> {
        use oci_client::secrets::RegistryAuth;
        match self {
            Credentials::Anonymous => Ok(RegistryAuth::Anonymous),
            Credentials::Basic { username, password } => {
                Ok(RegistryAuth::Basic(username.clone(), password.clone()))
            }
            Credentials::RegistryToken(t) => Ok(RegistryAuth::Bearer(t.clone())),
            Credentials::IdentityToken(_) => Err(Error::InvalidInput(
                "an identity token is exchanged for a bearer token before use".into(),
            )),
        }
    }
}

/// A challenge from `WWW-Authenticate`.
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

fn parse_challenge(response: &reqwest::Response) -> Option<Challenge> {
    let header = response.headers().get(WWW_AUTHENTICATE)?.to_str().ok()?;
    for challenge in http_auth::parser::ChallengeParser::new(header).flatten() {
        if challenge.scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if challenge.scheme.eq_ignore_ascii_case("bearer") {
            let param = |name: &str| {
                challenge
                    .params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            return Some(Challenge::Bearer {
                realm: param("realm")?,
                service: param("service"),
            });
        }
    }
    None
}

/// The registry's own words for a failed request: the distribution spec's
/// `{"errors":[{"code","message"}]}` as `code: message`, a token service's `details`, or the
/// body's text; the HTTP status when the body says nothing.
pub(super) async fn reason(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    reason_from_body(status, &body)
}

pub(super) fn reason_from_body(status: StatusCode, body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(default)]
        errors: Vec<Item>,
        #[serde(default)]
        details: String,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(envelope) = serde_json::from_str::<Envelope>(body) {
        let items: Vec<String> = envelope
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", docker_code(&e.code), e.message),
                (true, _) => e.message.clone(),
                (false, true) => docker_code(&e.code),
            })
            .collect::<Vec<_>>();
        let mut items = items;
        items.dedup();
        if !items.is_empty() {
            return items.join("; ");
        }
        if !envelope.details.is_empty() {
            return envelope.details;
        }
    }
    let text = body.trim();
    if text.is_empty() || text.starts_with('{') {
        status.to_string()
    } else {
        text.chars().take(300).collect()
    }
}

/// An error code as Docker prints it: `MANIFEST_UNKNOWN` is `manifest unknown`.
pub(super) fn docker_code(code: &str) -> String {
    code.to_lowercase().replace('_', " ")
}

/// The `client_id` we give token services, as Docker gives `docker`.
const CLIENT_ID: &str = "hyperd";

/// `GET /v2/` and what it asks for: nothing (`None`), Basic auth, or a token from a realm.
async fn challenge(
    ep: &Endpoint,
    http: &reqwest::Client,
) -> Result<(Option<Challenge>, reqwest::Response)> {
    let response = http
        .get(ep.url("/v2/"))
        .send()
        .await
        .map_err(|e| ep.unreachable(&e))?;
    let challenge = parse_challenge(&response);
    Ok((challenge, response))
}

/// A token service's answer (Docker's token spec: `token` or `access_token`, and a
/// `refresh_token` when an offline token was asked for).
#[derive(serde::Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    refresh_token: String,
}

/// A token from `realm` for `scope` (none at login): with Basic auth for a password
/// (`offline` asks for a refresh token too), or the OAuth2 refresh grant for an identity
/// token. Errors: [`Error::Unauthorized`] with the token service's reason.
async fn token(
    http: &reqwest::Client,
    realm: &str,
    service: Option<&str>,
    creds: &Credentials,
    scope: Option<&str>,
    offline: bool,
) -> Result<TokenAnswer> {
    let unreachable = |e: reqwest::Error| {
        Error::Unreachable(format!("token service {realm}: {}", super::chain(&e)))
    };
    let mut params: Vec<(&str, &str)> = Vec::new();
    if let Some(service) = service {
        params.push(("service", service));
    }
    if let Some(scope) = scope {
        params.push(("scope", scope));
    }
    let request = match creds {
        Credentials::Basic { username, password } => {
            params.push(("account", username));
            if offline {
                params.extend([("offline_token", "true"), ("client_id", CLIENT_ID)]);
            }
            http.get(realm)
                .query(&params)
                .basic_auth(username, Some(password))
        }
        Credentials::IdentityToken(refresh) => {
            params.extend([
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", CLIENT_ID),
            ]);
            http.post(realm).form(&params)
        }
        Credentials::Anonymous | Credentials::RegistryToken(_) => http.get(realm).query(&params),
    };
    let response = request.send().await.map_err(unreachable)?;
    if !response.status().is_success() {
        return Err(Error::Unauthorized(reason(response).await));
    }
    let answer: TokenAnswer = response.json().await.map_err(|e| {
        Error::Protocol(format!(
            "token service {realm}: not a token answer: {}",
            super::chain(&e)
        ))
    })?;
    if answer.token.is_empty() && answer.access_token.is_empty() {
        return Err(Error::Protocol(format!(
            "token service {realm}: the answer has no token"
        )));
    }
    Ok(answer)
}

/// Checks `creds` against the registry at `ep` as `docker login` does: `GET /v2/`; on a
/// Basic challenge the same request with the credentials; on a Bearer challenge a token from
/// the realm (Basic auth with `account` and an offline token asked for, or the refresh grant
/// of an identity token). A registry that asks for nothing accepts any credentials. Returns
/// the identity token (refresh token) the token service issued, if any. Errors:
/// [`Error::Unauthorized`] with the registry's reason (and nothing else),
/// [`Error::Unreachable`], [`Error::Protocol`].
pub(super) async fn check(
    ep: &Endpoint,
    http: &reqwest::Client,
    creds: &Credentials,
) -> Result<Option<String>> {
    let (challenge, response) = challenge(ep, http).await?;
    if response.status() != StatusCode::UNAUTHORIZED {
        return ok_or_reason(ep, response).await.map(|()| None);
    }
    let v2 = ep.url("/v2/");
    match (challenge, creds) {
        (_, Credentials::Anonymous) => {
            let why = reason(response).await;
            Err(Error::Unauthorized(format!("{why} (no credentials given)")))
        }
        (Some(Challenge::Bearer { realm, service }), creds) => {
            let answer = token(http, &realm, service.as_deref(), creds, None, true).await?;
            Ok(Some(answer.refresh_token).filter(|t| !t.is_empty()))
        }
        (_, Credentials::Basic { username, password }) => {
            let response = http
                .get(&v2)
                .basic_auth(username, Some(password))
                .send()
                .await
                .map_err(|e| ep.unreachable(&e))?;
            ok_or_reason(ep, response).await.map(|()| None)
        }
        (_, Credentials::RegistryToken(token)) => {
            let response = http
                .get(&v2)
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| ep.unreachable(&e))?;
            ok_or_reason(ep, response).await.map(|()| None)
        }
        (_, Credentials::IdentityToken(_)) => Err(Error::Unauthorized(
            "the registry does not use a token service, so an identity token cannot be used; \
             log in with a username and password"
                .into(),
        )),
    }
}

/// A bearer token for `scope` (`repository:<name>:pull[,push]`) in exchange for an identity
/// token, from the realm the registry challenges with.
pub(super) async fn access_token(
    ep: &Endpoint,
    http: &reqwest::Client,
    creds: &Credentials,
    scope: &str,
) -> Result<String> {
    let (challenge, _) = challenge(ep, http).await?;
    let Some(Challenge::Bearer { realm, service }) = challenge else {
        return Err(Error::Unauthorized(
            "the registry does not use a token service, so an identity token cannot be used; \
             log in with a username and password"
                .into(),
        ));
    };
    let answer = token(http, &realm, service.as_deref(), creds, Some(scope), false).await?;
    Ok(if answer.token.is_empty() {
        answer.access_token
    } else {
        answer.token
    })
}

async fn ok_or_reason(ep: &Endpoint, response: reqwest::Response) -> Result<()> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let why = reason(response).await;
    Err(match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Unauthorized(why),
        _ => Error::Protocol(format!("{}: GET /v2/: {why}", ep.host)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};

    fn basic(u: &str, p: &str) -> Credentials {
        Credentials::Basic {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn x_registry_auth_header_is_lenient_base64_of_json() {
        // `?>` in the password makes base64 and base64url differ (`/`,`+` vs `_`,`-`).
        let mut json =
            br#"{"username":"me","password":"p?>?>","serveraddress":"127.0.0.1:5000"}"#.to_vec();
        while json.len().is_multiple_of(3) {
            json.push(b' ');
        }
        let json = &json;
        for encoded in [
            URL_SAFE.encode(json),
            URL_SAFE_NO_PAD.encode(json),
            STANDARD.encode(json),
        ] {
            assert_eq!(
                Credentials::from_header(&encoded).unwrap(),
                basic("me", "p?>?>"),
                "{encoded}"
            );
        }
        assert!(
            URL_SAFE.encode(json).ends_with('='),
            "the padded case is tested"
        );
        assert_eq!(
            Credentials::from_header("").unwrap(),
            Credentials::Anonymous
        );
        assert_eq!(
            Credentials::from_header(&URL_SAFE.encode("{}")).unwrap(),
            Credentials::Anonymous
        );
        let auth = STANDARD.encode("u:pa:ss");
        let header = URL_SAFE.encode(format!(r#"{{"auth":"{auth}"}}"#));
        assert_eq!(
            Credentials::from_header(&header).unwrap(),
            basic("u", "pa:ss")
        );
        let header = URL_SAFE.encode(r#"{"registrytoken":"tok"}"#);
        assert_eq!(
            Credentials::from_header(&header).unwrap(),
            Credentials::RegistryToken("tok".into())
        );
    }

    #[test]
    fn garbage_headers_are_invalid_input() {
        for (value, why) in [
            ("%%%not base64%%%", "not base64url-encoded JSON"),
            (
                &URL_SAFE.encode("not json"),
                "not an auth config JSON object",
            ),
            (
                &URL_SAFE.encode(r#"{"password":"x"}"#),
                "a password without a username",
            ),
            (
                &URL_SAFE.encode(r#"{"auth":"bm9jb2xvbg=="}"#),
                "auth is not base64 of user:password",
            ),
        ] {
            let err = Credentials::from_header(value).unwrap_err();
            assert!(matches!(err, Error::InvalidInput(_)), "{value}: {err:?}");
            assert!(err.to_string().contains(why), "{value}: {err}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let shown = format!("{:?}", basic("me", "hunter2"));
        assert!(
            shown.contains("me") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn reasons_are_the_registrys_words() {
        let s = StatusCode::UNAUTHORIZED;
        assert_eq!(
            reason_from_body(
                s,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#
            ),
            "unauthorized: authentication required"
        );
        assert_eq!(
            reason_from_body(s, r#"{"details":"incorrect username or password"}"#),
            "incorrect username or password"
        );
        assert_eq!(reason_from_body(s, "nope\n"), "nope");
        assert_eq!(reason_from_body(s, ""), "401 Unauthorized");
    }
}

/// Client input never panics the `X-Registry-Auth` parser: any header value gives credentials
/// or an invalid-input error, and an encoded AuthConfig comes back as the credentials it holds.
/// `PROPTEST_CASES=10000` for the long run.
#[cfg(test)]
mod proptests {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    use proptest::prelude::*;

    use super::*;

    fn typed(value: &str) -> std::result::Result<Option<Credentials>, TestCaseError> {
        match Credentials::from_header(value) {
            Ok(c) => {
                if let Credentials::Basic { username, .. } = &c {
                    prop_assert!(!username.is_empty());
                }
                Ok(Some(c))
            }
            Err(Error::InvalidInput(_)) => Ok(None),
            Err(e) => Err(TestCaseError::fail(format!("{value:?}: {e}"))),
        }
    }

    fn auth_config() -> impl Strategy<Value = AuthConfig> {
        let field = || prop_oneof![Just(String::new()), ".{0,12}"];
        (
            field(),
            field(),
            field(),
            field(),
            field(),
            field(),
            field(),
        )
            .prop_map(
                |(username, password, auth, email, serveraddress, identitytoken, registrytoken)| {
                    AuthConfig {
                        username,
                        password,
                        auth,
                        email,
                        serveraddress,
                        identitytoken,
                        registrytoken,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn any_header_value(v in ".{0,64}|[A-Za-z0-9_=+/-]{0,64}") {
            typed(&v)?;
        }

        #[test]
        fn any_bytes_encoded(bytes in prop::collection::vec(any::<u8>(), 0..96), which in 0..3u8) {
            let engines = [URL_SAFE, URL_SAFE_NO_PAD, STANDARD];
            let engine = &engines[which as usize];
            typed(&engine.encode(&bytes))?;
        }

        #[test]
        fn an_auth_config_comes_back(a in auth_config(), which in 0..3u8) {
            let engines = [URL_SAFE, URL_SAFE_NO_PAD, STANDARD];
            let engine = &engines[which as usize];
            let header = engine.encode(serde_json::to_vec(&a).unwrap());
            let direct = Credentials::from_auth_config(&a).ok();
            prop_assert_eq!(typed(&header)?, direct);
        }

        #[test]
        fn auth_field_of_any_user_and_password(user in "[^:]{0,10}", password in ".{0,10}") {
            let a = AuthConfig {
                auth: STANDARD.encode(format!("{user}:{password}")),
                ..Default::default()
            };
            let header = URL_SAFE.encode(serde_json::to_vec(&a).unwrap());
            let expected = (!user.is_empty()).then(|| Credentials::Basic {
                username: user.clone(),
                password: password.clone(),
            });
            prop_assert_eq!(typed(&header)?, expected);
        }
    }
}
