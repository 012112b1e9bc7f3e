//! Against real `docker-registry` processes on 127.0.0.1, with images pushed by real skopeo.

use std::path::Path;

use hyper_tests::registry::{self as harness, OciImage, OciIndex, TestRegistry, tar_layer};

use super::*;

fn registry(certs_dir: &Path) -> Registry {
    Registry::new(RegistryConfig {
        insecure: vec![],
        mirrors: vec![],
        certs_dir: certs_dir.into(),
    })
    .unwrap()
}

fn reference(reg: &TestRegistry, name: &str) -> Reference {
    Reference::parse(&format!("{}/{name}", reg.host())).unwrap()
}

fn image(arch: &str, content: &[u8]) -> OciImage {
    OciImage::new(
        arch,
        vec![tar_layer(&[("etc/hello", content)])],
        &["/bin/sh"],
    )
}

fn ours(d: &harness::Descriptor) -> Descriptor {
    Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
    }
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

#[tokio::test]
async fn resolves_and_fetches_an_oci_image_from_a_plain_registry() {
    let reg = TestRegistry::start_plain();
    let img = image("amd64", b"hello from the layer");
    reg.push(&img, "app:1", None);
    let certs = tempfile::tempdir().unwrap();
    let registry = registry(certs.path());
    let anon = Credentials::Anonymous;

    let r = reference(&reg, "app:1");
    let resolved = registry.resolve(&r, &anon).await.unwrap();
    assert_eq!(resolved.digest, img.digest());
    assert_eq!(resolved.media_type, OCI_MANIFEST);
    assert_eq!(resolved.bytes, img.manifest);
    assert_eq!(resolved.config, ours(&img.config_descriptor()));
    let layers: Vec<Descriptor> = img.layer_descriptors().iter().map(ours).collect();
    assert_eq!(resolved.layers, layers);
    assert_eq!(resolved.index_digest, None);

    // By digest, the same manifest.
    let pinned = reference(&reg, &format!("app@{}", img.digest()));
    assert_eq!(
        registry.resolve(&pinned, &anon).await.unwrap().bytes,
        img.manifest
    );

    let (layer, progress) = fetch(&registry, &r, &layers[0].digest, &anon)
        .await
        .unwrap();
    assert_eq!(layer, img.layers[0]);
    assert_eq!(progress.last().copied(), Some(img.layers[0].len() as u64));
    let (config, _) = fetch(&registry, &r, &resolved.config.digest, &anon)
        .await
        .unwrap();
    assert_eq!(config, img.config);

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
    let missing = harness::sha256(b"no such blob");
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
async fn resolves_docker_schema2_manifests() {
    let reg = TestRegistry::start_plain();
    let img = image("amd64", b"docker flavoured");
    reg.push(&img, "docker:1", Some("v2s2"));
    let certs = tempfile::tempdir().unwrap();
    let registry = registry(certs.path());
    let r = reference(&reg, "docker:1");
    let resolved = registry.resolve(&r, &Credentials::Anonymous).await.unwrap();
    assert_eq!(resolved.media_type, DOCKER_MANIFEST);
    assert_eq!(resolved.digest, harness::sha256(&resolved.bytes));
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
    let layer = &img.layer_descriptors()[0];
    let config = img.config_descriptor();

    assert!(
        !registry
            .blob_exists(&r, &layer.digest, &anon)
            .await
            .unwrap()
    );
    // A manifest whose blobs the registry lacks is refused with its reason.
    let err = registry
        .push_manifest(&r, &img.manifest, OCI_MANIFEST, &anon)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("push manifest {r}: manifest blob unknown: blob unknown to registry")
    );

    let file = certs.path().join("layer.tar");
    std::fs::write(&file, &img.layers[0]).unwrap();
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
            BlobSource::Bytes(img.config.clone().into()),
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
            &harness::sha256(b"other"),
            BlobSource::Bytes("this".into()),
            &anon,
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");

    let digest = registry
        .push_manifest(&r, &img.manifest, OCI_MANIFEST, &anon)
        .await
        .unwrap();
    assert_eq!(digest, img.digest());
    assert_eq!(reg.inspect_raw("pushed/app:v1"), img.manifest);
}

#[tokio::test]
async fn multi_arch_indexes_resolve_to_linux_amd64() {
    let reg = TestRegistry::start_plain();
    let amd64 = image("amd64", b"x86");
    let arm64 = image("arm64", b"arm");
    let index = OciIndex::new(vec![arm64.clone(), amd64.clone()]);
    reg.push_index(&index, "multi:1");
    let certs = tempfile::tempdir().unwrap();
    let registry = registry(certs.path());

    let resolved = registry
        .resolve(&reference(&reg, "multi:1"), &Credentials::Anonymous)
        .await
        .unwrap();
    assert_eq!(resolved.digest, amd64.digest());
    assert_eq!(resolved.config, ours(&amd64.config_descriptor()));
    assert_eq!(resolved.index_digest, Some(index.digest()));

    reg.push_index(&OciIndex::new(vec![arm64]), "armonly:1");
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
    reg.push(&img, "private/app:1", None);
    let registry = registry(&reg.certs_dir());
    let good = basic("alice", "s3cret");

    registry.login(&reg.host(), &good).await.unwrap();
    registry
        .login(&format!("https://{}/v1/", reg.host()), &good)
        .await
        .unwrap();
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
    let resolved = registry.resolve(&r, &good).await.unwrap();
    assert_eq!(resolved.digest, img.digest());
    let (layer, _) = fetch(&registry, &r, &resolved.layers[0].digest, &good)
        .await
        .unwrap();
    assert_eq!(layer, img.layers[0]);
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
    let pushed = reference(&reg, "private/pushed:1");
    for (d, data) in [
        (other.config_descriptor(), other.config.clone()),
        (
            other.layer_descriptors()[0].clone(),
            other.layers[0].clone(),
        ),
    ] {
        registry
            .push_blob(
                &pushed,
                &d.digest,
                BlobSource::Bytes(data.into()),
                &good,
                |_| {},
            )
            .await
            .unwrap();
    }
    registry
        .push_manifest(&pushed, &other.manifest, OCI_MANIFEST, &good)
        .await
        .unwrap();
    assert_eq!(reg.inspect_raw("private/pushed:1"), other.manifest);
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
    })
    .unwrap();
    insecure.login(&reg.host(), &creds).await.unwrap();
}

#[tokio::test]
async fn docker_hub_names_go_to_the_mirrors_in_order() {
    let mirror = TestRegistry::start_plain();
    let img = image("amd64", b"from the mirror");
    mirror.push(&img, "library/busybox:1", None);
    let certs = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let registry = Registry::new(RegistryConfig {
        insecure: vec![],
        mirrors: vec![dead, format!("http://{}/", mirror.host())],
        certs_dir: certs.path().into(),
    })
    .unwrap();
    let anon = Credentials::Anonymous;
    let r = Reference::parse("busybox:1").unwrap();
    let resolved = registry.resolve(&r, &anon).await.unwrap();
    assert_eq!(resolved.digest, img.digest());
    let (layer, _) = fetch(&registry, &r, &resolved.layers[0].digest, &anon)
        .await
        .unwrap();
    assert_eq!(layer, img.layers[0]);

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
fn the_registry_is_shared_across_tasks() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let registry = registry(Path::new("/nonexistent"));
    send_sync(&registry);
    let (r, c) = (Reference::parse("x").unwrap(), Credentials::Anonymous);
    let digest = harness::sha256(b"");
    let mut out = Vec::new();
    send(registry.resolve(&r, &c));
    send(registry.fetch_blob(&r, &digest, &c, &mut out, |_| {}));
    send(registry.blob_exists(&r, &digest, &c));
    send(registry.push_blob(&r, &digest, BlobSource::Bytes(Bytes::new()), &c, |_| {}));
    send(registry.push_manifest(&r, b"{}", OCI_MANIFEST, &c));
    send(registry.login("x", &c));
}
