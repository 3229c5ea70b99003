//! `hull pull` and `hull login` against a registry that demands Bearer
//! tokens: Debian's `docker-registry` with `auth: token`, verifying RS256
//! JWTs against a certificate, and a token server on 127.0.0.1 that this
//! test runs ([`hull_tests::token_server`]), which signs real tokens with
//! the matching key (or, to check the registry verifies them, another).

use std::path::PathBuf;
use std::process::Output;

use hull_tests::registry::Registry;
use hull_tests::token_server::{TokenRequest, TokenServer};
use hull_tests::{assert_one_line_error, image_archive, ok, Hull};

const USER: &str = "hull";
const PASSWORD: &str = "t0ken-pw";

fn busybox() -> String {
    format!("oci-archive:{}", image_archive("busybox.tar").display())
}

/// A token server and a registry that trusts it, with busybox pushed
/// (through the token server, by skopeo) to each of `repos`.
fn registry_with(repos: &[&str]) -> (TokenServer, Registry) {
    let tokens = TokenServer::start(USER, PASSWORD);
    let reg = Registry::start_with_tokens(&tokens, USER, PASSWORD);
    for repo in repos {
        reg.push(&busybox(), repo, &[]);
    }
    (tokens, reg)
}

/// A store that exists but holds nothing; its files.
fn initialized(hull: &Hull) -> Vec<PathBuf> {
    ok(&hull.hull(&["images"]));
    hull.files()
}

fn pull(hull: &Hull, image: &str) -> Output {
    hull.hull(&["pull", "--plain-http", image])
}

fn login(hull: &Hull, reg: &Registry, password: &str) -> Output {
    hull.hull_with_stdin(
        &[
            "login",
            "--plain-http",
            "-u",
            USER,
            "--password-stdin",
            &reg.addr,
        ],
        format!("{password}\n").as_bytes(),
    )
}

/// Whether the token server issued a token for pulling `repo` to `user`
/// (`None`: anonymously).
fn granted(tokens: &TokenServer, user: Option<&str>, repo: &str) -> bool {
    let scope = format!("repository:{repo}:pull");
    tokens.requests().iter().any(|r: &TokenRequest| {
        r.status == 200 && r.user.as_deref() == user && r.scopes.contains(&scope)
    })
}

/// Asserts the store holds one image, with its disk built, and it runs
/// nowhere: only the files a pull makes.
fn assert_pulled(hull: &Hull, image: &str) {
    let images = ok(&hull.hull(&["images"]));
    assert!(images.contains(image), "{images}");
    let disks: Vec<_> = std::fs::read_dir(hull.store_dir().join("disks"))
        .unwrap()
        .collect();
    assert_eq!(disks.len(), 1, "the pull builds the disk");
}

#[test]
fn login_and_pull_with_bearer_tokens() {
    let (tokens, reg) = registry_with(&["hull/private:1"]);
    let image = reg.image("hull/private:1");
    let hull = Hull::new();
    let before = initialized(&hull);

    // Anonymous: the client follows the challenge to the token server,
    // which hands out a token without access; the registry says no.
    let out = pull(&hull, &image);
    assert_one_line_error(&out, 125, "denied access");
    assert_eq!(hull.files(), before, "a refused pull left files behind");
    let anonymous = tokens
        .requests()
        .iter()
        .any(|r| r.user.is_none() && r.scopes.contains(&"repository:hull/private:pull".into()));
    assert!(
        anonymous,
        "the pull never asked the token server: {:?}",
        tokens.requests()
    );

    // `hull login` checks the password at the token server.
    let out = login(&hull, &reg, "wrong");
    assert_one_line_error(&out, 125, "wrong user name or password");
    assert!(!hull.store_dir().join("auth.json").exists());
    assert_eq!(hull.files(), before);
    assert!(ok(&login(&hull, &reg, PASSWORD)).contains("Login Succeeded"));

    // With the stored credentials, the token grants the pull.
    let out = ok(&pull(&hull, &image));
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert!(
        granted(&tokens, Some(USER), "hull/private"),
        "no token was issued to {USER}: {:?}",
        tokens.requests()
    );
    assert_pulled(&hull, &image);

    // The image runs from what the pull stored.
    let run = ok(&hull.hull(&["run", "--rm", &image, "cat", "/etc/hull-release"]));
    assert!(!run.trim().is_empty(), "empty /etc/hull-release");
}

#[test]
fn wrong_stored_credentials_fail_and_change_nothing() {
    let (tokens, reg) = registry_with(&["hull/private:1"]);
    let image = reg.image("hull/private:1");
    let hull = Hull::new();
    assert!(ok(&login(&hull, &reg, PASSWORD)).contains("Login Succeeded"));
    let before = initialized(&hull);

    // The password changes at the token server's side after the login:
    // what is stored is now wrong (written as `hull login` writes it).
    let stale = format!(
        r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
        reg.addr,
        base64_of(&format!("{USER}:not-any-more"))
    );
    std::fs::write(hull.store_dir().join("auth.json"), stale).unwrap();
    let before_token_requests = tokens.requests().len();
    let out = pull(&hull, &image);
    assert_one_line_error(&out, 125, "refused the stored credentials");
    let refused = tokens.requests()[before_token_requests..]
        .iter()
        .any(|r| r.status == 401 && r.user.as_deref() == Some(USER));
    assert!(
        refused,
        "the token server never saw the wrong password: {:?}",
        tokens.requests()
    );
    let mut after = hull.files();
    after.retain(|p| !p.ends_with("auth.json"));
    let mut expected = before.clone();
    expected.retain(|p| !p.ends_with("auth.json"));
    assert_eq!(after, expected, "a refused pull left files behind");
}

#[test]
fn anonymous_tokens_pull_public_repositories() {
    let (tokens, reg) = registry_with(&["public/busybox:1"]);
    let image = reg.image("public/busybox:1");
    let hull = Hull::new();
    ok(&pull(&hull, &image));
    assert!(
        granted(&tokens, None, "public/busybox"),
        "no anonymous token was issued: {:?}",
        tokens.requests()
    );
    assert_pulled(&hull, &image);

    // With the token server gone, a pull says so, and stores nothing.
    let other = Hull::new();
    let before = initialized(&other);
    drop(tokens);
    let out = pull(&other, &image);
    assert_one_line_error(&out, 125, "cannot reach the token server of registry");
    assert_eq!(other.files(), before);
}

#[test]
fn the_registry_refuses_tokens_signed_with_another_key() {
    let (tokens, reg) = registry_with(&["hull/private:1"]);
    let image = reg.image("hull/private:1");
    let hull = Hull::new();
    assert!(ok(&login(&hull, &reg, PASSWORD)).contains("Login Succeeded"));
    let before = initialized(&hull);

    tokens.forge(true);
    let out = pull(&hull, &image);
    assert_one_line_error(&out, 125, "denied access");
    assert_eq!(hull.files(), before, "a refused pull left files behind");
    assert!(granted(&tokens, Some(USER), "hull/private"));

    // The same server, signing with the trusted key again: fine.
    tokens.forge(false);
    ok(&pull(&hull, &image));
    assert_pulled(&hull, &image);
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
