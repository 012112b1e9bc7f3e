//! Against real `docker-registry` processes on 127.0.0.1, with images pushed by real skopeo.

use std::path::Path;

use hyper_tests::oci::{Compression, TestImage, TestLayer, sha256};
use hyper_tests::registry::TestRegistry;

use super::*;

fn registry(certs_dir: &Path) -> Registry {
    Registry::new(RegistryConfig {
        insecure: vec![],
        mirrors: vec![],
        certs_dir: certs_dir.into(),
        ..RegistryConfig::default()
    })
    .unwrap()
}

fn reference(reg: &TestRegistry, name: &str) -> Reference {
    Reference::parse(&format!("{}/{name}", reg.host())).unwrap()
}

/// A `linux/<arch>` image of one gzip layer holding `/etc/hello` with `content`.
fn image(arch: &str, content: &[u8]) -> TestImage {
    let layer = TestLayer::new().file("etc/hello", content, 0o644, 0, 0);
    TestImage::new(vec![layer])
        .platform("linux", arch)
        .cmd(&["/bin/sh"])
        .env(&["PATH=/bin"])
}

/// The descriptor a manifest gives `data`, as the test computes it.
fn descriptor(media_type: &str, data: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: sha256(data),
        size: data.len() as u64,
    }
}

fn config_descriptor(img: &TestImage) -> Descriptor {
    descriptor(
        "application/vnd.oci.image.config.v1+json",
        &img.config_bytes(),
    )
}

fn layer_descriptors(img: &TestImage) -> Vec<Descriptor> {
    img.layer_blobs()
        .iter()
        .map(|l| descriptor(Compression::Gzip.media_type(), l))
        .collect()
}

fn basic(user: &str, password: &str) -> Credentials {
    Credentials::Basic {
        username: user.into(),
        password: password.into(),
    }
}

async fn fetch(
    registry: &Registry,
    r: &Reference,
    digest: &str,
    creds: &Credentials,
) -> Result<(Vec<u8>, Vec<u64>)> {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    registry
        .fetch_blob(r, digest, creds, &mut out, |n| seen.push(n))
        .await?;
    Ok((out, seen))
}

/// Resolves `r` with `creds` and fetches its first layer: both are `img`'s, as pushed.
async fn pulls_back(
    registry: &Registry,
    r: &Reference,
    img: &TestImage,
    creds: &Credentials,
) -> Resolved {
    let resolved = registry.resolve(r, creds).await.unwrap();
    assert_eq!(resolved.digest, img.manifest_digest());
    let (layer, _) = fetch(registry, r, &resolved.layers[0].digest, creds)
        .await
        .unwrap();
    assert_eq!(layer, img.layer_blobs()[0]);
    resolved
}

/// Pushes `img` to `<reg>/<name>` as hyperd does, blob by blob (each absent before) with
/// `creds`, then the manifest with `manifest_creds`; skopeo reads back the same manifest.
async fn push_blobs_and_manifest(
    registry: &Registry,
    reg: &TestRegistry,
    name: &str,
    img: &TestImage,
    creds: &Credentials,
    manifest_creds: &Credentials,
) {
    let r = reference(reg, name);
    let blobs = [
        (config_descriptor(img), img.config_bytes()),
        (
            layer_descriptors(img)[0].clone(),
            img.layer_blobs()[0].clone(),
        ),
    ];
    for (d, data) in blobs {
        assert!(!registry.blob_exists(&r, &d.digest, creds).await.unwrap());
        registry
            .push_blob(&r, &d.digest, BlobSource::Bytes(data.into()), creds, |_| {})
            .await
            .unwrap();
    }
    registry
        .push_manifest(&r, &img.manifest(), OCI_MANIFEST, manifest_creds)
        .await
        .unwrap();
    assert_eq!(reg.inspect_raw(name), img.manifest());
}

#[tokio::test]
async fn resolves_and_fetches_an_oci_image_from_a_plain_registry() {
    let reg = TestRegistry::start_plain();
    let img = image("amd64", b"hello from the layer");
    reg.push_image(&img, "app:1");
    let certs = tempfile::tempdir().unwrap();
    let registry = registry(certs.path());
    let anon = Credentials::Anonymous;

    let r = reference(&reg, "app:1");
    let resolved = registry.resolve(&r, &anon).await.unwrap();
    assert_eq!(resolved.digest, img.manifest_digest());
    assert_eq!(resolved.media_type, OCI_MANIFEST);
    assert_eq!(resolved.bytes, img.manifest());
    assert_eq!(resolved.config, config_descriptor(&img));
    let layers = layer_descriptors(&img);
    assert_eq!(resolved.layers, layers);
    assert_eq!(resolved.index_digest, None);

    // By digest, the same manifest.
    let pinned = reference(&reg, &format!("app@{}", img.manifest_digest()));
    assert_eq!(
        registry.resolve(&pinned, &anon).await.unwrap().bytes,
        img.manifest()
    );

    let (layer, progress) = fetch(&registry, &r, &layers[0].digest, &anon)
        .await
        .unwrap();
    assert_eq!(layer, img.layer_blobs()[0]);
    assert_eq!(
        progress.last().copied(),
        Some(img.layer_blobs()[0].len() as u64)
    );
    let (config, _) = fetch(&registry, &r, &resolved.config.digest, &anon)
        .await
        .unwrap();
    assert_eq!(config, img.config_bytes());

    let err = registry
        .resolve(&reference(&reg, "app:nope"), &anon)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "manifest for {}/app:nope: manifest unknown: manifest unknown",
            reg.host()
        )
    );
    let err = registry
        .resolve(&reference(&reg, "nothing-here:1"), &anon)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    let missing = sha256(b"no such blob");
    let err = fetch(&registry, &r, &missing, &anon).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert!(err.to_string().contains(&missing), "{err}");
    // A registry that asks for no credentials accepts a login.
    registry.login(&reg.host(), &anon).await.unwrap();
    let err = fetch(&registry, &r, "sha256:../../etc", &anon)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
}

#[tokio::test]
async fn a_blob_that_does_not_match_its_digest_is_refused() {
    let reg = TestRegistry::start_plain();
    let img = image("amd64", b"the real content");
    reg.push_image(&img, "app:1");
    let layer = layer_descriptors(&img)[0].digest.clone();
    let stored = reg.blob_path(&layer);
    let mut damaged = std::fs::read(&stored).unwrap();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    std::fs::write(&stored, damaged).unwrap();

    let certs = tempfile::tempdir().unwrap();
    let err = fetch(
        &registry(certs.path()),
        &reference(&reg, "app:1"),
        &layer,
        &Credentials::Anonymous,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&layer) && msg.contains("the registry sent content whose digest is sha256:"),
        "{msg}"
    );
}

#[tokio::test]
async fn resolves_docker_schema2_manifests() {
    let reg = TestRegistry::start_plain();
    let img = image("amd64", b"docker flavoured");
    reg.push_image_as(&img, "docker:1", "v2s2");
    let certs = tempfile::tempdir().unwrap();
    let registry = registry(certs.path());
    let r = reference(&reg, "docker:1");
    let resolved = registry.resolve(&r, &Credentials::Anonymous).await.unwrap();
    assert_eq!(resolved.media_type, DOCKER_MANIFEST);
    assert_eq!(resolved.digest, sha256(&resolved.bytes));
    assert_eq!(resolved.layers.len(), 1);
    let (config, _) = fetch(
        &registry,
        &r,
        &resolved.config.digest,
        &Credentials::Anonymous,
    )
    .await
    .unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["architecture"], "amd64");
}

#[tokio::test]
async fn pushes_blobs_and_a_manifest_that_skopeo_reads_back() {
    let reg = TestRegistry::start_plain();
    let img = image("amd64", b"pushed by hyperd");
    let certs = tempfile::tempdir().unwrap();
    let registry = registry(certs.path());
    let anon = Credentials::Anonymous;
    let r = reference(&reg, "pushed/app:v1");
    let layer = &layer_descriptors(&img)[0];
    let config = config_descriptor(&img);

    assert!(
        !registry
            .blob_exists(&r, &layer.digest, &anon)
            .await
            .unwrap()
    );
    // A manifest whose blobs the registry lacks is refused with its reason.
    let err = registry
        .push_manifest(&r, &img.manifest(), OCI_MANIFEST, &anon)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("push manifest {r}: manifest blob unknown: blob unknown to registry")
    );

    let file = certs.path().join("layer.tar");
    std::fs::write(&file, &img.layer_blobs()[0]).unwrap();
    let sent = std::sync::Arc::new(std::sync::Mutex::new(0u64));
    let progress = {
        let sent = sent.clone();
        move |n| *sent.lock().unwrap() = n
    };
    registry
        .push_blob(&r, &layer.digest, BlobSource::File(file), &anon, progress)
        .await
        .unwrap();
    assert_eq!(*sent.lock().unwrap(), layer.size);
    registry
        .push_blob(
            &r,
            &config.digest,
            BlobSource::Bytes(img.config_bytes().into()),
            &anon,
            |_| {},
        )
        .await
        .unwrap();
    assert!(
        registry
            .blob_exists(&r, &layer.digest, &anon)
            .await
            .unwrap()
    );
    assert!(
        registry
            .blob_exists(&r, &config.digest, &anon)
            .await
            .unwrap()
    );

    // Content that is not what its digest says is refused by the registry.
    let err = registry
        .push_blob(
            &r,
            &sha256(b"other"),
            BlobSource::Bytes("this".into()),
            &anon,
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");

    let digest = registry
        .push_manifest(&r, &img.manifest(), OCI_MANIFEST, &anon)
        .await
        .unwrap();
    assert_eq!(digest, img.manifest_digest());
    assert_eq!(reg.inspect_raw("pushed/app:v1"), img.manifest());
}

#[tokio::test]
async fn multi_arch_indexes_resolve_to_linux_amd64() {
    let reg = TestRegistry::start_plain();
    let amd64 = image("amd64", b"x86");
    let arm64 = image("arm64", b"arm");
    let both = [arm64.clone(), amd64.clone()];
    reg.push_images(&both, "multi:1");
    let certs = tempfile::tempdir().unwrap();
    let registry = registry(certs.path());

    let resolved = registry
        .resolve(&reference(&reg, "multi:1"), &Credentials::Anonymous)
        .await
        .unwrap();
    assert_eq!(resolved.digest, amd64.manifest_digest());
    assert_eq!(resolved.config, config_descriptor(&amd64));
    assert_eq!(resolved.index_digest, Some(TestImage::index_digest(&both)));

    reg.push_images(&[arm64], "armonly:1");
    let err = registry
        .resolve(&reference(&reg, "armonly:1"), &Credentials::Anonymous)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Platform(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("no linux/amd64 image") && msg.contains("the index has linux/arm64"),
        "{msg}"
    );
}

#[tokio::test]
async fn tls_registry_with_auth_checks_credentials() {
    let reg = TestRegistry::start_tls_auth("alice", "s3cret");
    let img = image("amd64", b"private");
    reg.push_image(&img, "private/app:1");
    let registry = registry(&reg.certs_dir());
    let good = basic("alice", "s3cret");

    assert_eq!(registry.login(&reg.host(), &good).await.unwrap(), None);
    registry
        .login(&format!("https://{}/v1/", reg.host()), &good)
        .await
        .unwrap();
    // Basic auth has no token service to exchange an identity token with.
    let err = registry
        .login(&reg.host(), &Credentials::IdentityToken("t".into()))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("does not use a token service"),
        "{err}"
    );
    let err = registry
        .login(&reg.host(), &basic("alice", "wrong"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg == format!(
            "login to {}: unauthorized: authentication required",
            reg.host()
        ),
        "{msg}"
    );
    let err = registry
        .login(&reg.host(), &Credentials::Anonymous)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");

    let r = reference(&reg, "private/app:1");
    let resolved = pulls_back(&registry, &r, &img, &good).await;
    assert!(
        registry
            .blob_exists(&r, &resolved.layers[0].digest, &good)
            .await
            .unwrap()
    );

    for creds in [Credentials::Anonymous, basic("alice", "wrong")] {
        let err = registry.resolve(&r, &creds).await.unwrap_err();
        assert!(matches!(err, Error::Unauthorized(_)), "{creds:?}: {err:?}");
        assert!(err.to_string().contains("authentication required"), "{err}");
        let err = registry
            .blob_exists(&r, &resolved.layers[0].digest, &creds)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unauthorized(_)), "{creds:?}: {err:?}");
    }

    // Push with credentials, and the registry serves what we pushed.
    let other = image("amd64", b"pushed over tls");
    push_blobs_and_manifest(&registry, &reg, "private/pushed:1", &other, &good, &good).await;
}

#[tokio::test]
async fn token_auth_registry_checks_credentials_at_its_token_service() {
    let reg = TestRegistry::start_token_auth("bob", "hunter2");
    let img = image("amd64", b"behind a token");
    reg.push_image(&img, "team/app:1");
    let certs = tempfile::tempdir().unwrap();
    let registry = registry(certs.path());
    let good = basic("bob", "hunter2");
    let wrong = basic("bob", "nope");

    // A password login hands out the token service's identity token.
    let identity = registry.login(&reg.host(), &good).await.unwrap();
    assert_eq!(identity, reg.identity_token());
    let identity = Credentials::IdentityToken(identity.unwrap());
    assert_eq!(registry.login(&reg.host(), &identity).await.unwrap(), None);
    let err = registry.login(&reg.host(), &wrong).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("login to {}: incorrect username or password", reg.host())
    );

    let r = reference(&reg, "team/app:1");
    pulls_back(&registry, &r, &img, &good).await;

    // An identity token is exchanged for a bearer token per repository.
    assert_eq!(
        registry.resolve(&r, &identity).await.unwrap().digest,
        img.manifest_digest()
    );
    let stale = Credentials::IdentityToken("stale".into());
    let err = registry.resolve(&r, &stale).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("pull access to {}: invalid refresh token", r.repo)
    );
    let err = registry.login(&reg.host(), &stale).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");

    let err = registry.resolve(&r, &wrong).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("manifest for {r}: incorrect username or password")
    );
    let err = registry
        .resolve(&r, &Credentials::Anonymous)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized(_)), "{err:?}");
    assert!(err.to_string().contains("authentication required"), "{err}");

    // Blobs pushed with the password, the manifest with the identity token.
    let other = image("amd64", b"pushed with a token");
    push_blobs_and_manifest(&registry, &reg, "team/pushed:1", &other, &good, &identity).await;
}

#[tokio::test]
async fn tls_is_verified_against_certs_d_when_it_has_a_ca_for_the_host() {
    let reg = TestRegistry::start_tls_auth("u", "p");
    let stranger = TestRegistry::start_tls_auth("u", "p");
    let creds = basic("u", "p");

    // No CA for the host: loopback is insecure by default, TLS without verification.
    let empty = tempfile::tempdir().unwrap();
    registry(empty.path())
        .login(&reg.host(), &creds)
        .await
        .unwrap();

    // Another CA for the host: verification fails, and says so.
    let wrong = tempfile::tempdir().unwrap();
    std::fs::create_dir(wrong.path().join(reg.host())).unwrap();
    std::fs::copy(
        stranger.ca_cert_path(),
        wrong.path().join(reg.host()).join("ca.crt"),
    )
    .unwrap();
    let err = registry(wrong.path())
        .login(&reg.host(), &creds)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable(_)), "{err:?}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    // Listed as insecure: not verified even with a wrong CA.
    let insecure = Registry::new(RegistryConfig {
        insecure: vec![reg.host()],
        mirrors: vec![],
        certs_dir: wrong.path().into(),
        ..RegistryConfig::default()
    })
    .unwrap();
    insecure.login(&reg.host(), &creds).await.unwrap();
}

#[tokio::test]
async fn docker_hub_names_go_to_the_mirrors_in_order() {
    let mirror = TestRegistry::start_plain();
    let img = image("amd64", b"from the mirror");
    mirror.push_image(&img, "library/busybox:1");
    let certs = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let registry = Registry::new(RegistryConfig {
        insecure: vec![],
        mirrors: vec![dead, format!("http://{}/", mirror.host())],
        certs_dir: certs.path().into(),
        ..RegistryConfig::default()
    })
    .unwrap();
    let anon = Credentials::Anonymous;
    let r = Reference::parse("busybox:1").unwrap();
    pulls_back(&registry, &r, &img, &anon).await;

    assert!(matches!(
        Registry::new(RegistryConfig {
            mirrors: vec!["mirror.example".into()],
            ..RegistryConfig::default()
        }),
        Err(Error::InvalidInput(_))
    ));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_registry_is_shared_across_tasks() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let registry = registry(Path::new("/nonexistent"));
    send_sync(&registry);
    let (r, c) = (Reference::parse("x").unwrap(), Credentials::Anonymous);
    let digest = sha256(b"");
    let mut out = Vec::new();
    send(registry.resolve(&r, &c));
    send(registry.fetch_blob(&r, &digest, &c, &mut out, |_| {}));
    send(registry.blob_exists(&r, &digest, &c));
    send(registry.push_blob(&r, &digest, BlobSource::Bytes(Bytes::new()), &c, |_| {}));
    send(registry.push_manifest(&r, b"{}", OCI_MANIFEST, &c));
    send(registry.login("x", &c));
}
