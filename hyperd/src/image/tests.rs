//! The image service against real files: imports in every compression, removal and garbage
//! collection, archives round-tripped, and failures that leave nothing behind.

use std::io::Write as _;

use hyper_tests::oci::TestLayer;

use super::*;

/// A layer of regular files (mode 0755, owned by root).
fn layer(files: &[(&str, &[u8])]) -> TestLayer {
    files.iter().fold(TestLayer::new(), |l, (name, data)| {
        l.file(name, data, 0o755, 0, 0)
    })
}

fn tarball(files: &[(&str, &[u8])]) -> Vec<u8> {
    layer(files).tar()
}

fn images() -> (tempfile::TempDir, Images) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
    let registry = registry::Registry::new(registry::RegistryConfig::default()).unwrap();
    let images = Images::new(dir.path(), store, registry).unwrap();
    (dir, images)
}

fn body(data: Vec<u8>) -> impl Stream<Item = std::result::Result<Bytes, std::io::Error>> + Unpin {
    // Several chunks, as a real request body arrives.
    let chunks: Vec<_> = data
        .chunks(1000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(chunks)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn an_import_is_a_one_layer_image_with_config_and_manifest() {
    let (dir, images) = images();
    let img = images
        .import(body(tarball(&[("bin/hello", b"hi")])), "busybox", "")
        .await
        .unwrap();
    assert_eq!(img.size, 2);
    assert_eq!(img.layers.len(), 1);
    let lowers = images.lower_dirs(&img);
    assert_eq!(
        std::fs::read(Path::new(&lowers[0]).join("bin/hello")).unwrap(),
        b"hi"
    );
    assert_eq!(images.resolve("busybox").unwrap().id, img.id);
    assert_eq!(images.resolve("busybox:latest").unwrap().id, img.id);
    assert_eq!(images.resolve(&img.id[..12]).unwrap().id, img.id);
    assert_eq!(
        images.resolve(&format!("sha256:{}", img.id)).unwrap().id,
        img.id
    );
    let err = images.resolve("nginx").unwrap_err();
    assert_eq!(err.to_string(), "no such image: nginx");
    assert_eq!(err.kind(), Kind::NotFound);

    // The id is the config's digest, and the config names the layer's diff id.
    let inspect = images.inspect("busybox").unwrap();
    assert_eq!(inspect.id, format!("sha256:{}", img.id));
    assert_eq!(inspect.repo_tags, ["busybox:latest"]);
    assert_eq!(inspect.root_fs.layers, [img.layers[0].diff_id.to_string()]);
    assert_eq!(
        (inspect.os.as_str(), inspect.architecture.as_str()),
        ("linux", "amd64")
    );
    let config_blob = dir.path().join("content/blobs/sha256").join(&img.id);
    assert_eq!(
        Digest::of(&std::fs::read(config_blob).unwrap()).hex(),
        img.id
    );
    // Nothing of the upload is left in the work dir.
    assert!(entries(&dir.path().join("tmp")).is_empty());
}

#[tokio::test]
async fn the_same_tar_in_every_compression_imports_to_the_same_layer() {
    let files = layer(&[("etc/motd", b"hello"), ("bin/x", b"x")]);
    let (tar, gzip) = (files.tar(), files.gzip());
    let bzip2 = {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let xz = {
        let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let zstd = zstd::encode_all(&tar[..], 3).unwrap();
    let mut diff_ids = Vec::new();
    for (name, data) in [
        ("plain", tar.clone()),
        ("gzip", gzip),
        ("bzip2", bzip2),
        ("xz", xz),
        ("zstd", zstd),
    ] {
        // A store each: the same content imported twice is one image, kept as first stored.
        let (_d, images) = images();
        let img = images
            .import(body(data), name, "1")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let lower = &images.lower_dirs(&img)[0];
        assert_eq!(
            std::fs::read(Path::new(lower).join("etc/motd")).unwrap(),
            b"hello",
            "{name}"
        );
        diff_ids.push(img.layers[0].diff_id.clone());
        let media_type = img.layers[0].media_type.as_str();
        let want = match name {
            "gzip" => manifest::MEDIA_TYPE_OCI_LAYER_GZIP,
            "zstd" => manifest::MEDIA_TYPE_OCI_LAYER_ZSTD,
            _ => manifest::MEDIA_TYPE_OCI_LAYER,
        };
        assert_eq!(media_type, want, "{name}");
    }
    assert!(diff_ids.windows(2).all(|w| w[0] == w[1]), "{diff_ids:?}");
    assert_eq!(diff_ids[0], Digest::of(&tar));
}

#[tokio::test]
async fn garbage_and_hostile_tarballs_leave_no_image_and_no_files() {
    let (dir, images) = images();
    let err = images
        .import(
            body(b"this is not a tar archive at all".repeat(40)),
            "x",
            "1",
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidInput, "{err}");
    let err = images.import(body(Vec::new()), "x", "1").await.unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");

    // `../escape` written by hand: the tar crate's builder refuses such names.
    let mut tar = tarball(&[("ok", b"1")]);
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..9].copy_from_slice(b"../escape");
    h.set_size(1);
    h.set_mode(0o644);
    h.set_cksum();
    let end = tar.len() - 1024;
    let mut evil = tar[..end].to_vec();
    evil.extend_from_slice(h.as_bytes());
    evil.extend_from_slice(&[b'x'; 1]);
    evil.extend_from_slice(&[0; 511]);
    evil.extend_from_slice(&[0; 1024]);
    tar = evil;
    let err = images.import(body(tar), "x", "1").await.unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidInput, "{err}");
    assert!(err.to_string().contains("escape"), "{err}");
    assert!(!dir.path().join("escape").exists());

    assert_eq!(images.count().unwrap(), 0);
    assert!(entries(&dir.path().join("tmp")).is_empty());
    assert!(entries(&dir.path().join("snapshots")).is_empty());
    assert!(entries(&dir.path().join("content/ingest")).is_empty());
}

#[tokio::test]
async fn removal_untags_then_deletes_and_collects_what_no_image_needs() {
    let (dir, images) = images();
    let a = images
        .import(body(tarball(&[("a", b"a")])), "a", "1")
        .await
        .unwrap();
    let b = images
        .import(body(tarball(&[("b", b"b")])), "b", "1")
        .await
        .unwrap();
    assert_ne!(a.id, b.id);
    images.tag("a:1", "a", "2").unwrap();

    // a has two tags: removing one only untags.
    let removed = images.remove("a:2", false).await.unwrap();
    assert_eq!(removed.untagged, ["a:2"]);
    assert!(removed.deleted.is_empty());

    // By id with several tags needs force.
    images.tag("a:1", "a", "3").unwrap();
    let err = images.remove(&a.id[..12], false).await.unwrap_err();
    assert_eq!(err.kind(), Kind::Conflict, "{err}");

    let snapshots = dir.path().join("snapshots");
    let blobs = dir.path().join("content/blobs/sha256");
    let removed = images.remove(&a.id, true).await.unwrap();
    assert_eq!(removed.untagged, ["a:1", "a:3"]);
    assert_eq!(removed.deleted, [format!("sha256:{}", a.id)]);
    // b's layer, config and manifest stay; a's are gone.
    assert_eq!(entries(&snapshots).len(), 1);
    assert_eq!(entries(&blobs).len(), 3);
    images.remove("b:1", false).await.unwrap();
    assert!(images.resolve("b:1").is_err());
    assert!(entries(&snapshots).is_empty());
    assert!(entries(&dir.path().join("content/blobs/sha256")).is_empty());
    assert_eq!(images.count().unwrap(), 0);
}

#[tokio::test]
async fn save_then_load_gives_back_the_same_image_in_both_formats() {
    for format in [ArchiveFormat::Docker, ArchiveFormat::Oci] {
        let (_d, images) = images();
        let gz = layer(&[("etc/motd", b"saved")]).gzip();
        let img = images.import(body(gz), "saved", "v1").await.unwrap();
        let mut file = images.save(&["saved:v1".into()], format).await.unwrap();
        let mut archive = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut archive).unwrap();

        let (_d2, other) = super::tests::images();
        let (progress, mut rx) = Progress::channel();
        let loaded = other.load(body(archive), &progress).await.unwrap();
        drop(progress);
        assert_eq!(loaded, ["saved:v1"], "{format:?}");
        let mut lines = Vec::new();
        while let Some(m) = rx.recv().await {
            lines.push(m.stream);
        }
        assert!(
            lines.contains(&"Loaded image: saved:v1\n".to_string()),
            "{lines:?}"
        );
        let back = other.resolve("saved:v1").unwrap();
        assert_eq!(back.id, img.id, "{format:?}");
        assert_eq!(back.layers[0].diff_id, img.layers[0].diff_id);
        if format == ArchiveFormat::Oci {
            // Blobs verbatim: the same manifest, so the same registry digest on a push.
            assert_eq!(back.manifest, img.manifest);
        }
        let lower = &other.lower_dirs(&back)[0];
        assert_eq!(
            std::fs::read(Path::new(lower).join("etc/motd")).unwrap(),
            b"saved"
        );
    }
}

#[tokio::test]
async fn an_archive_that_is_not_one_is_refused_and_leaves_nothing() {
    let (dir, images) = images();
    let err = images
        .load(body(tarball(&[("hello", b"x")])), &Progress::discard())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidInput, "{err}");
    assert_eq!(images.count().unwrap(), 0);
    assert!(entries(&dir.path().join("tmp")).is_empty());
    let err = images
        .save(&["nosuch".into()], ArchiveFormat::Docker)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::NotFound, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_imports_of_the_same_content_make_one_intact_image() {
    let (dir, images) = images();
    let tar = tarball(&[("bin/a", &[1u8; 200_000]), ("bin/b", &[2u8; 200_000])]);
    let (a, b) = tokio::join!(
        images.import(body(tar.clone()), "same", "1"),
        images.import(body(tar.clone()), "same", "2"),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.layers[0].diff_id, b.layers[0].diff_id);
    // One layer on disk, whole.
    assert_eq!(entries(&dir.path().join("snapshots")).len(), 1);
    let lower = &images.lower_dirs(&a)[0];
    assert_eq!(
        std::fs::read(Path::new(lower).join("bin/a")).unwrap(),
        vec![1u8; 200_000]
    );
    assert_eq!(images.resolve("same:1").unwrap().layers, a.layers);
    assert_eq!(images.resolve("same:2").unwrap().layers, b.layers);
    assert!(entries(&dir.path().join("content/ingest")).is_empty());
}

#[tokio::test]
async fn a_digest_reference_is_removed_alone_and_goes_with_its_repos_last_tag() {
    let (_d, images) = images();
    let img = images
        .import(body(tarball(&[("a", b"a")])), "reg:5000/app", "1")
        .await
        .unwrap();
    let digest = format!("sha256:{}", "d".repeat(64));
    images
        .store
        .write(|tx| store::add_repo_digest(tx, "reg:5000/app", &digest, &img.id))
        .unwrap();
    images.tag("reg:5000/app:1", "other", "1").unwrap();

    // By digest: only that reference goes.
    let removed = images
        .remove(&format!("reg:5000/app@{digest}"), false)
        .await
        .unwrap();
    assert_eq!(removed.untagged, [format!("reg:5000/app@{digest}")]);
    assert!(removed.deleted.is_empty());
    assert_eq!(images.resolve("reg:5000/app:1").unwrap().id, img.id);

    // A repo's last tag takes its digest references along; the image stays for `other`.
    images
        .store
        .write(|tx| store::add_repo_digest(tx, "reg:5000/app", &digest, &img.id))
        .unwrap();
    let removed = images.remove("reg:5000/app:1", false).await.unwrap();
    assert_eq!(
        removed.untagged,
        [
            "reg:5000/app:1".to_string(),
            format!("reg:5000/app@{digest}")
        ]
    );
    assert!(removed.deleted.is_empty());
    let removed = images.remove("other:1", false).await.unwrap();
    assert_eq!(removed.deleted, [format!("sha256:{}", img.id)]);
}

#[tokio::test]
async fn names_that_read_as_image_ids_are_refused() {
    let (_d, images) = images();
    let img = images
        .import(body(tarball(&[("a", b"a")])), "a", "1")
        .await
        .unwrap();
    for (repo, tag) in [(img.id.as_str(), "latest"), ("sha256", img.id.as_str())] {
        let err = images.tag("a:1", repo, tag).unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidInput, "{repo}:{tag}: {err}");
    }
    // A name that is not valid is a 400 naming it, not "no such image".
    let err = images.resolve("UPPER").unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidInput, "{err}");
    assert!(err.to_string().contains("UPPER"), "{err}");
}

#[tokio::test]
async fn a_loaded_layer_must_match_its_diff_id_even_when_that_layer_is_unpacked_already() {
    let (dir, images) = images();
    let real = tarball(&[("real", b"the real layer")]);
    images
        .import(body(real.clone()), "base", "1")
        .await
        .unwrap();

    // A docker-archive whose config names the real layer but whose tar is another one.
    let fake = tarball(&[("fake", b"something else")]);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&real).to_string()]}
    })
    .to_string();
    let manifest = serde_json::json!([
        {"Config": "config.json", "RepoTags": ["evil:8"], "Layers": ["layer.tar"]}
    ])
    .to_string();
    let mut archive = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("manifest.json", manifest.as_bytes()),
        ("config.json", config.as_bytes()),
        ("layer.tar", &fake[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        archive.append_data(&mut h, name, data).unwrap();
    }
    let err = images
        .load(body(archive.into_inner().unwrap()), &Progress::discard())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the image config says"), "{err}");
    assert!(images.resolve("evil:8").is_err());
    assert!(entries(&dir.path().join("tmp")).is_empty());
}

#[tokio::test]
async fn a_dir_becomes_a_layer_blob_and_its_snapshot_without_unpacking() {
    let (_dir, images) = images();
    let upper = images.work_dir().join("upper");
    std::fs::create_dir_all(upper.join("etc")).unwrap();
    std::fs::write(upper.join("etc/motd"), "hello").unwrap();
    let ino =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(upper.join("etc/motd")).unwrap());
    let (layer, size) = images.layer_from_dir(upper.clone(), None).await.unwrap();
    assert_eq!(size, 5);
    assert!(!upper.exists(), "the dir moved into the snapshot");
    let snap = images.snapshot_path(&layer.chain_id);
    let moved = std::fs::metadata(snap.join("etc/motd")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&moved),
        ino,
        "moved, not copied"
    );
    // The blob is a gzip tar whose uncompressed digest is the diff id.
    let blob = images.content.read(&layer.digest).unwrap();
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(blob.as_slice()), &mut tar)
        .unwrap();
    assert_eq!(Digest::of(&tar), layer.diff_id);
    assert_eq!(
        layer.chain_id, layer.diff_id,
        "a base layer's chain id is its diff id"
    );
    // The same tree on top of it gets its own chain id.
    let again = images.work_dir().join("again");
    std::fs::create_dir_all(again.join("etc")).unwrap();
    std::fs::write(again.join("etc/motd"), "hello").unwrap();
    let (top, _) = images
        .layer_from_dir(again, Some(layer.chain_id.clone()))
        .await
        .unwrap();
    assert_ne!(top.chain_id, layer.chain_id);
}
