//! The Engine API server (`hull system service`, the `hull-api` door)
//! driven by real clients: Debian's `docker` 20.10 CLI (/usr/bin/docker,
//! never dockerd) and the Python SDK (`python3-docker`), each VM a real
//! QEMU guest. Each test runs one service on a socket in a temp dir
//! against its own hull installation, and ends with nothing left.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use hull_tests::registry::Registry;
use hull_tests::{eventually, image_archive, ok, processes_mentioning, stderr, stdout, Hull};

/// Debian's docker client; /usr/local/bin/docker on this machine is
/// another one.
const DOCKER: &str = "/usr/bin/docker";
const IMAGE: &str = "hull-demo/busybox";
/// Longest any one client command may take before the test fails.
const COMMAND_TIMEOUT_SECS: &str = "180";

/// One hull installation and its API service.
struct Api {
    hull: Hull,
    dir: tempfile::TempDir,
    service: Option<Child>,
}

impl Api {
    /// A service on an installation with the busybox test images.
    fn start() -> Api {
        Api::start_on(Hull::with_busybox())
    }

    fn start_on(hull: Hull) -> Api {
        let dir = tempfile::Builder::new()
            .prefix("hull-api")
            .tempdir()
            .expect("temp dir");
        let mut api = Api {
            hull,
            dir,
            service: None,
        };
        api.start_service();
        api
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// `hull system service` (which execs `hull-api`), until its socket
    /// answers.
    fn start_service(&mut self) {
        let socket = self.socket();
        let log = std::fs::File::create(self.dir.path().join("service.log")).expect("log");
        let child = self
            .hull
            .command(&["system", "service", "--socket", socket.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hull system service");
        self.service = Some(child);
        eventually(20, "the API socket", || {
            UnixStream::connect(&socket).is_ok()
        });
    }

    /// SIGTERM to the service; it removes its socket.
    fn stop_service(&mut self) {
        if let Some(mut child) = self.service.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let status = child.wait().expect("wait for the service");
            assert!(status.success(), "service exit: {status}; {}", self.log());
        }
        assert!(!self.socket().exists(), "the service left its socket");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    fn docker_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.arg(COMMAND_TIMEOUT_SECS)
            .arg(DOCKER)
            .args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .stdin(Stdio::null());
        cmd
    }

    fn docker(&self, args: &[&str]) -> Output {
        self.docker_command(args).output().expect("run docker")
    }

    /// Runs docker; asserts success; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: exit {:?}; stdout: {}; stderr: {}; service log: {}",
            out.status.code(),
            stdout(&out),
            stderr(&out),
            self.log()
        );
        stdout(&out)
    }

    /// Python with the Docker SDK pointed at the service (`HOST`).
    fn python(&self, script: &str) -> Output {
        Command::new("timeout")
            .arg(COMMAND_TIMEOUT_SECS)
            .args(["python3", "-c", script])
            .env("HOST", self.host())
            .stdin(Stdio::null())
            .output()
            .expect("run python3")
    }

    /// A raw request with curl (for bodies no client sends).
    fn curl(&self, method: &str, path: &str, body: &[u8]) -> (String, String) {
        let body_file = self.dir.path().join("body");
        std::fs::write(&body_file, body).unwrap();
        let out = Command::new("curl")
            .args(["-s", "--max-time", "60", "-X", method, "--unix-socket"])
            .arg(self.socket())
            .args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(format!("@{}", body_file.display()))
            .args(["-w", "\n%{http_code}"])
            .arg(format!("http://hull{path}"))
            .output()
            .expect("curl");
        let text = stdout(&out);
        let (answer, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.to_string(), answer.to_string())
    }

    /// Stops the service and checks nothing of the installation is left.
    fn finish(mut self) {
        self.stop_service();
        self.hull.assert_no_sandbox_left();
        let left = processes_mentioning(self.socket().to_str().unwrap());
        assert!(left.is_empty(), "processes left: {left:?}");
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(mut child) = self.service.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `docker ps -a --filter FILTER`: the names.
fn names(api: &Api, filter: &str) -> String {
    api.ok(&["ps", "-a", "--filter", filter, "--format", "{{.Names}}"])
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn docker_run_logs_exec_ps_inspect_stop_and_rm() {
    let mut api = Api::start();
    let version = api.ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(version.trim(), "1.41");
    let info = api.ok(&["info", "--format", "{{.DefaultRuntime}} {{.Images}}"]);
    assert_eq!(info.trim(), "hull 2");

    // An attached run: its output, and its exit code passed on.
    assert_eq!(api.ok(&["run", "--rm", IMAGE, "echo", "hi"]), "hi\n");
    let out = api.docker(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "echo to-out; echo to-err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "to-out\n");
    assert!(stderr(&out).contains("to-err"), "{}", stderr(&out));
    // stdin reaches an attached -i run.
    let mut child = api
        .docker_command(&[
            "run",
            "--rm",
            "-i",
            IMAGE,
            "sh",
            "-c",
            "read x; echo got $x",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "got hello\n");

    // Detached, with a label: ps, filters, logs, exec, inspect.
    let id = api.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--label",
        "app=shop",
        "-e",
        "GREETING=hello",
        IMAGE,
        "sh",
        "-c",
        "echo started; echo warn >&2; while true; do sleep 1; done",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    assert_eq!(names(&api, "label=app=shop"), "web\n");
    assert_eq!(names(&api, "label=app"), "web\n");
    assert_eq!(names(&api, "label=app=other"), "");
    assert_eq!(names(&api, "name=we"), "web\n");
    assert_eq!(names(&api, "status=running"), "web\n");
    assert_eq!(names(&api, &format!("ancestor={IMAGE}")), "web\n");
    // The same container is an ordinary hull container.
    let hull_ps = ok(&api.hull.hull(&["ps"]));
    assert!(hull_ps.contains("web"), "{hull_ps}");

    eventually(60, "the first log line", || {
        stdout(&api.docker(&["logs", "web"])) == "started\n"
    });
    let out = api.docker(&["logs", "web"]);
    assert!(stderr(&out).contains("warn"), "{}", stderr(&out));
    let out = api.docker(&[
        "exec",
        "web",
        "sh",
        "-c",
        "echo $GREETING from exec; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "hello from exec\n");

    let inspect = json(&api.ok(&["inspect", "web"]));
    let c = &inspect[0];
    assert_eq!(c["Id"], id.as_str());
    assert_eq!(c["Name"], "/web");
    assert_eq!(c["State"]["Status"], "running");
    assert_eq!(c["State"]["Running"], true);
    assert!(c["State"]["Pid"].as_i64().unwrap() > 0, "{c}");
    assert_eq!(c["Config"]["Image"], IMAGE);
    assert_eq!(c["Config"]["Labels"]["app"], "shop");
    assert!(c["Config"]["Env"]
        .as_array()
        .unwrap()
        .contains(&"GREETING=hello".into()));
    assert!(c["Image"].as_str().unwrap().starts_with("sha256:"), "{c}");

    // Restarting the service loses nothing.
    api.stop_service();
    api.start_service();
    assert_eq!(names(&api, "label=app=shop"), "web\n");

    api.ok(&["stop", "-t", "1", "web"]);
    let state = api.ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.Running}}",
        "web",
    ]);
    assert_eq!(state.trim(), "exited false");
    assert_eq!(names(&api, "status=exited"), "web\n");
    assert_eq!(api.ok(&["ps", "--format", "{{.Names}}"]), "");

    // `logs -f` ends when the container does.
    api.ok(&[
        "run",
        "-d",
        "--name",
        "brief",
        IMAGE,
        "sh",
        "-c",
        "echo one; sleep 2; echo two",
    ]);
    assert_eq!(api.ok(&["logs", "-f", "brief"]), "one\ntwo\n");
    assert_eq!(api.ok(&["wait", "brief"]).trim(), "0");

    // rm -f of a running one; rm of stopped ones.
    api.ok(&["run", "-d", "--name", "busy", IMAGE, "sleep", "600"]);
    api.ok(&["rm", "-f", "busy"]);
    api.ok(&["rm", "web", "brief"]);
    assert_eq!(api.ok(&["ps", "-a", "--format", "{{.Names}}"]), "");
    api.finish();
}

#[test]
fn bad_requests_get_dockers_error_shapes_and_leave_nothing() {
    let api = Api::start();
    let out = api.docker(&["container", "inspect", "nosuch"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("No such container: nosuch"),
        "{}",
        stderr(&out)
    );
    let out = api.docker(&["inspect", "nosuch"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("No such object: nosuch"),
        "{}",
        stderr(&out)
    );
    let out = api.docker(&["rm", "nosuch"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("No such container: nosuch"),
        "{}",
        stderr(&out)
    );

    let out = api.docker(&["run", "--rm", "--pull", "never", "nosuch-image", "true"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("No such image: nosuch-image"),
        "{}",
        stderr(&out)
    );
    let out = api.docker(&["run", "--restart", "always", IMAGE, "true"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("RestartPolicy"), "{}", stderr(&out));

    // A client that never finishes its request holds nothing: others
    // are served meanwhile.
    let mut slow = UnixStream::connect(api.socket()).unwrap();
    slow.write_all(b"POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut slow_body = UnixStream::connect(api.socket()).unwrap();
    slow_body
        .write_all(b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    assert_eq!(
        api.ok(&["version", "--format", "{{.Server.APIVersion}}"])
            .trim(),
        "1.41"
    );
    drop((slow, slow_body));

    let (code, body) = api.curl("POST", "/v1.41/containers/create", b"{\"Image\": ");
    assert_eq!(code, "400", "{body}");
    assert!(
        json(&body)["message"].as_str().unwrap().contains("JSON"),
        "{body}"
    );
    let huge = format!("{{\"Image\":\"{}\"}}", "x".repeat(2 << 20));
    let (code, body) = api.curl("POST", "/containers/create", huge.as_bytes());
    assert_eq!(code, "413", "{body}");
    assert!(json(&body)["message"].is_string(), "{body}");
    let (code, body) = api.curl("POST", "/v1.41/containers/nosuch/rename?name=x", b"");
    assert_eq!(code, "501", "{body}");
    assert!(
        json(&body)["message"].as_str().unwrap().contains("rename"),
        "{body}"
    );
    let (code, body) = api.curl("GET", "/v1.99/info", b"");
    assert_eq!(code, "400", "{body}");

    assert_eq!(api.ok(&["ps", "-a", "--format", "{{.Names}}"]), "");
    api.finish();
}

#[test]
fn docker_pull_from_a_local_registry_then_run_and_rmi() {
    // An empty store: the pull brings everything.
    let api = Api::start_on(Hull::new());
    let reg = Registry::start();
    let source = format!("oci-archive:{}", image_archive("busybox.tar").display());
    reg.push(&source, "hull/busybox:1", &[]);
    let image = reg.image("hull/busybox:1");
    let out = api.ok(&["pull", &image]);
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {image}")),
        "{out}"
    );
    let images = api.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.contains(&image), "{images}");
    assert_eq!(
        api.ok(&["run", "--rm", &image, "echo", "pulled"]),
        "pulled\n"
    );
    let inspect = json(&api.ok(&["image", "inspect", &image]));
    assert!(inspect[0]["Id"].as_str().unwrap().starts_with("sha256:"));
    api.ok(&["rmi", &image]);
    let images = api.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!images.contains(&image), "{images}");
    // A repository the registry does not have: a clear error.
    let out = api.docker(&["pull", &reg.image("hull/nothing:1")]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!stderr(&out).is_empty());
    api.finish();
}

#[test]
fn the_python_sdk_runs_waits_reads_logs_and_execs() {
    let api = Api::start();
    let script = format!(
        r#"
import os, docker
client = docker.DockerClient(base_url=os.environ["HOST"])
c = client.containers.run("{IMAGE}", ["sh", "-c", "echo from sdk; sleep 3; exit 4"],
                          detach=True, labels={{"via": "sdk"}})
r = c.exec_run(["sh", "-c", "echo in exec; exit 2"])
print("exec", r.exit_code, r.output.decode().strip())
print("wait", c.wait()["StatusCode"])
print("logs", c.logs().decode().strip())
print("listed", [x.name for x in client.containers.list(all=True, filters={{"label": "via=sdk"}})] == [c.name])
c.remove()
print("run", client.containers.run("{IMAGE}", ["echo", "attached"], remove=True).decode().strip())
"#
    );
    let out = api.python(&script);
    assert!(
        out.status.success(),
        "stdout: {}; stderr: {}; service: {}",
        stdout(&out),
        stderr(&out),
        api.log()
    );
    assert_eq!(
        stdout(&out),
        "exec 2 in exec\nwait 4\nlogs from sdk\nlisted True\nrun attached\n"
    );
    api.finish();
}
