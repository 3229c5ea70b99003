//! `hull exec`: a process started in the running container, with the
//! client's stdio passed to the supervisor.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hull_protocol::{ErrorKind, ExecProcess, Reply, Request, Stdio};
use tokio::sync::oneshot;

use super::control::{ControlConn, ControlReply, ControlRequest, ExecRequest};
use super::io::{self, Sink};
use super::{lock, running_client, Shared};
use hull_sandbox::agent_client::RequestError;

/// Stream ids of exec'd processes start here, three per process.
const FIRST_EXEC_STREAM: u32 = 16;

pub(super) async fn serve(
    shared: &Arc<Shared>,
    mut conn: ControlConn,
    request: ExecRequest,
    fds: Vec<OwnedFd>,
) {
    let fail = |message: String, code: i32| ControlReply::Error { message, code };
    let Some(client) = running_client(shared) else {
        let _ = conn
            .reply(&fail("the container is not running".into(), 125))
            .await;
        return;
    };
    let mut fds = fds.into_iter();
    let stdin_fd = if request.stdin { fds.next() } else { None };
    let (Some(out), Some(err)) = (fds.next(), fds.next()) else {
        let _ = conn
            .reply(&fail(
                "exec needs stdout and stderr descriptors".into(),
                125,
            ))
            .await;
        return;
    };
    let n = shared.next_exec.fetch_add(1, Ordering::Relaxed);
    let process_id = format!("exec-{n}");
    let base = FIRST_EXEC_STREAM + 3 * n;
    let (out_id, err_id, in_id) = (base, base + 1, base + 2);
    let process = match exec_process(&shared.container.config.spec, &request) {
        Ok(p) => p,
        Err(message) => {
            let _ = conn.reply(&fail(message, 125)).await;
            return;
        }
    };
    let (exit_tx, exit_rx) = oneshot::channel();
    lock(&shared.exec_exits).insert(process_id.clone(), exit_tx);
    let (out_sink, err_sink) = (Sink::default(), Sink::default());
    out_sink.attach(out);
    err_sink.attach(err);
    let pumps = vec![
        io::pump_output(
            shared.handle.clone(),
            client.open_output(out_id),
            None,
            out_sink,
        ),
        io::pump_output(
            shared.handle.clone(),
            client.open_output(err_id),
            None,
            err_sink,
        ),
    ];
    let input = stdin_fd
        .as_ref()
        .map(|_| Arc::new(client.open_input(in_id)));
    let started = client
        .request(Request::ExecProcess(Box::new(ExecProcess {
            container_id: shared.container.config.id.clone(),
            process_id: process_id.clone(),
            process,
            user: request
                .user
                .clone()
                .unwrap_or_else(|| shared.container.config.user.clone()),
            stdio: Stdio {
                stdin: input.as_ref().map(|_| in_id),
                stdout: out_id,
                stderr: err_id,
            },
        })))
        .await;
    let pid = match started {
        Ok(Reply::Started { pid }) => pid,
        Ok(_) => 0,
        Err(e) => {
            lock(&shared.exec_exits).remove(&process_id);
            let code = match &e {
                RequestError::Agent(err) => match err.kind {
                    ErrorKind::CommandNotFound => 127,
                    ErrorKind::CommandNotExecutable => 126,
                    _ => 125,
                },
                RequestError::Client(_) => 125,
            };
            // Nothing will come on the streams: end the pumps.
            client.close_output(out_id);
            client.close_output(err_id);
            io::join(pumps).await;
            let _ = conn.reply(&fail(e.to_string(), code)).await;
            return;
        }
    };
    let cancel = Arc::new(AtomicBool::new(false));
    if let (Some(fd), Some(input)) = (stdin_fd, input) {
        io::pump_input(shared.handle.clone(), fd, input, cancel.clone(), true);
    }
    let _ = conn.reply(&ControlReply::Started { pid }).await;

    let mut exit_rx = exit_rx;
    let mut client_gone = false;
    let owned = request.owned;
    let status = loop {
        tokio::select! {
            status = &mut exit_rx => break status.ok(),
            request = conn.next(), if !client_gone => match request {
                Some(ControlRequest::Signal { signal }) => client.notify(Request::Signal {
                    process: process_id.clone(),
                    signal,
                }),
                Some(ControlRequest::Resize { rows, cols }) => {
                    client.notify(Request::ResizeTerminal {
                        process: process_id.clone(),
                        rows,
                        cols,
                    })
                }
                Some(_) => {}
                None => {
                    client_gone = true;
                    if owned {
                        client.notify(Request::Signal {
                            process: process_id.clone(),
                            signal: libc::SIGKILL,
                        });
                    }
                }
            },
        }
    };
    cancel.store(true, Ordering::Relaxed);
    drop(client);
    io::join(pumps).await;
    let reply = match status {
        Some(status) => ControlReply::Exited {
            exit_code: status.shell_code(),
            oom_killed: false,
            error: None,
        },
        None => ControlReply::Exited {
            exit_code: 137,
            oom_killed: false,
            error: Some("the container stopped".into()),
        },
    };
    let _ = conn.reply(&reply).await;
}

/// The exec'd process: the container's process with the request's
/// command, environment, directory and terminal.
fn exec_process(
    spec: &oci_spec::runtime::Spec,
    request: &ExecRequest,
) -> Result<oci_spec::runtime::Process, String> {
    if request.args.is_empty() {
        return Err("exec needs a command".into());
    }
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(request.args.clone()));
    let mut env = process.env().clone().unwrap_or_default();
    for entry in &request.env {
        let key = entry.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(entry.clone());
    }
    process.set_env(Some(env));
    if let Some(dir) = &request.workdir {
        if !dir.starts_with('/') {
            return Err(format!("the working directory {dir:?} is not absolute"));
        }
        process.set_cwd(dir.into());
    }
    process.set_terminal(Some(request.tty));
    process.set_console_size(request.size.and_then(|(rows, cols)| {
        oci_spec::runtime::BoxBuilder::default()
            .height(u64::from(rows))
            .width(u64::from(cols))
            .build()
            .ok()
    }));
    Ok(process)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_keeps_the_containers_process_and_overrides_what_was_asked() {
        let spec = oci_spec::runtime::Spec::default();
        let request = ExecRequest {
            owned: false,
            args: vec!["sh".into()],
            env: vec!["PATH=/x".into(), "A=1".into()],
            workdir: Some("/tmp".into()),
            user: None,
            tty: true,
            stdin: false,
            size: Some((24, 80)),
        };
        let p = exec_process(&spec, &request).unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["sh"]);
        let env = p.env().as_ref().unwrap();
        assert!(env.contains(&"PATH=/x".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
        assert_eq!(p.cwd().to_str(), Some("/tmp"));
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(p.console_size().unwrap().height(), 24);
        assert!(exec_process(
            &spec,
            &ExecRequest {
                args: vec![],
                ..request.clone()
            }
        )
        .is_err());
        assert!(exec_process(
            &spec,
            &ExecRequest {
                workdir: Some("rel".into()),
                ..request
            }
        )
        .is_err());
    }
}
