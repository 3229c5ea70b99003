//! `hull load` of real and damaged OCI archives: damage is refused with one
//! line, and leaves the store exactly as it was.

use std::io::Read;
use std::path::Path;

use hull_tests::{assert_one_line_error, image_archive, stdout, Hull};

/// Copies an archive, passing each entry's bytes through `edit`.
fn rewrite_archive(from: &Path, to: &Path, edit: impl Fn(&str, Vec<u8>) -> Vec<u8>) {
    let mut input = tar::Archive::new(std::fs::File::open(from).unwrap());
    let mut output = tar::Builder::new(std::fs::File::create(to).unwrap());
    for entry in input.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let data = edit(&path, data);
        header.set_size(data.len() as u64);
        header.set_cksum();
        output.append(&header, data.as_slice()).unwrap();
    }
    output.finish().unwrap();
}

/// The digests of the layers of the archive's first manifest.
fn layer_digests(archive: &Path) -> Vec<String> {
    let mut blobs = std::collections::HashMap::new();
    let mut input = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for entry in input.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        blobs.insert(path, data);
    }
    let index: serde_json::Value = serde_json::from_slice(&blobs["index.json"]).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .replace(':', "/");
    let manifest: serde_json::Value =
        serde_json::from_slice(&blobs[&format!("blobs/{digest}")]).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().replace(':', "/"))
        .collect()
}

/// Files of a store that exists but holds nothing (its empty layout).
fn initialized_files(hull: &Hull) -> Vec<std::path::PathBuf> {
    assert!(hull.hull(&["images"]).status.success());
    hull.files()
}

#[test]
fn a_real_archive_loads_and_lists() {
    let hull = Hull::new();
    let out = hull.hull(&["load", "-i", image_archive("busybox.tar").to_str().unwrap()]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("hull-demo/busybox:latest"));
    let images = hull.hull(&["images"]);
    assert!(stdout(&images).contains("hull-demo/busybox:latest"));
}

#[test]
fn a_truncated_archive_is_refused_cleanly() {
    let hull = Hull::new();
    let good = std::fs::read(image_archive("busybox.tar")).unwrap();
    let bad = hull.root.path().join("truncated.tar");
    std::fs::write(&bad, &good[..good.len() / 3]).unwrap();
    let before = initialized_files(&hull);
    let out = hull.hull(&["load", "-i", bad.to_str().unwrap()]);
    assert_one_line_error(&out, 125, "truncated.tar");
    assert_eq!(hull.files(), before, "a failed load left files behind");
}

#[test]
fn garbage_is_refused_cleanly() {
    let hull = Hull::new();
    let bad = hull.root.path().join("garbage.tar");
    std::fs::write(&bad, vec![0x5a; 10_000]).unwrap();
    let before = initialized_files(&hull);
    let out = hull.hull(&["load", "-i", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(hull_tests::stderr(&out).lines().count(), 1);
    assert_eq!(hull.files(), before);
}

#[test]
fn a_layer_that_does_not_match_its_digest_is_refused() {
    let hull = Hull::new();
    let good = image_archive("busybox.tar");
    let layer = layer_digests(&good).pop().expect("image has layers");
    let bad = hull.root.path().join("tampered.tar");
    rewrite_archive(&good, &bad, |path, mut data| {
        if path.trim_start_matches("./") == format!("blobs/{layer}") {
            let mid = data.len() / 2;
            data[mid] ^= 0xff;
        }
        data
    });
    let before = initialized_files(&hull);
    let out = hull.hull(&["load", "-i", bad.to_str().unwrap()]);
    assert_one_line_error(&out, 125, &layer.replace('/', ":"));
    assert_eq!(hull.files(), before, "a failed load left files behind");
    let run = hull.hull(&["run", "--rm", "hull-demo/busybox", "true"]);
    assert_eq!(
        run.status.code(),
        Some(125),
        "the tampered image must not be usable"
    );
}

#[test]
fn a_missing_archive_is_named() {
    let hull = Hull::new();
    let out = hull.hull(&["load", "-i", "/nonexistent/archive.tar"]);
    assert_one_line_error(&out, 125, "/nonexistent/archive.tar");
}
