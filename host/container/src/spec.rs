//! Docker's rules for turning an image config plus `run` flags into the
//! process to start: Entrypoint/Cmd, Env, WorkingDir, User.

use thiserror::Error;

/// PATH Docker gives a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the image config says (the subset `run` uses).
#[derive(Debug, Clone, Default)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

/// What the user asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOverrides {
    /// `--entrypoint`; `Some("")` clears the image's entrypoint.
    pub entrypoint: Option<String>,
    /// Arguments after the image name.
    pub cmd: Vec<String>,
    /// `-e KEY=VALUE` or `-e KEY` (taken from `host_env`).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

/// The process to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("no command specified: the image has no Entrypoint or Cmd and none was given")]
    NoCommand,
    #[error("the working directory '{0}' is invalid, it needs to be an absolute path")]
    RelativeWorkdir(String),
    #[error("invalid environment variable {0:?}")]
    BadEnv(String),
}

/// Applies Docker's rules.
pub fn plan_process(
    image: &ImageDefaults,
    run: &RunOverrides,
    hostname: &str,
    host_env: impl Fn(&str) -> Option<String>,
) -> Result<ProcessPlan, SpecError> {
    // --entrypoint replaces the image's entrypoint and drops its Cmd;
    // arguments after the image replace Cmd.
    let (entrypoint, default_cmd) = match &run.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.clone()], Vec::new()),
        None => (image.entrypoint.clone(), image.cmd.clone()),
    };
    let cmd = if run.cmd.is_empty() {
        default_cmd
    } else {
        run.cmd.clone()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }

    let mut env: Vec<String> = Vec::new();
    let mut set = |kv: String| {
        let key = kv.split('=').next().unwrap_or_default().to_string();
        env.retain(|existing| existing.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    set(format!("HOSTNAME={hostname}"));
    for kv in &image.env {
        set(kv.clone());
    }
    for item in &run.env {
        match item.split_once('=') {
            Some(("", _)) => return Err(SpecError::BadEnv(item.clone())),
            Some(_) => set(item.clone()),
            None if item.is_empty() => return Err(SpecError::BadEnv(item.clone())),
            None => {
                if let Some(value) = host_env(item) {
                    set(format!("{item}={value}"));
                }
            }
        }
    }
    if !env.iter().any(|kv| kv.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }

    let cwd = match &run.workdir {
        Some(w) if !w.starts_with('/') => return Err(SpecError::RelativeWorkdir(w.clone())),
        Some(w) => w.clone(),
        None if image.working_dir.is_empty() => "/".to_string(),
        None => image.working_dir.clone(),
    };
    let user = run.user.clone().unwrap_or_else(|| image.user.clone());
    Ok(ProcessPlan {
        args,
        env,
        cwd,
        user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn image() -> ImageDefaults {
        ImageDefaults {
            entrypoint: s(&["/entry"]),
            cmd: s(&["--default"]),
            env: s(&["PATH=/img/bin", "A=image"]),
            working_dir: "/work".into(),
            user: "app".into(),
        }
    }

    fn no_host(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn image_defaults_apply() {
        let p = plan_process(&image(), &RunOverrides::default(), "h", no_host).unwrap();
        assert_eq!(p.args, s(&["/entry", "--default"]));
        assert_eq!(p.env, s(&["HOSTNAME=h", "PATH=/img/bin", "A=image"]));
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/work", "app"));
    }

    #[test]
    fn cmd_args_replace_cmd_not_entrypoint() {
        let run = RunOverrides {
            cmd: s(&["x", "y"]),
            ..Default::default()
        };
        assert_eq!(
            plan_process(&image(), &run, "h", no_host).unwrap().args,
            s(&["/entry", "x", "y"])
        );
    }

    #[test]
    fn entrypoint_flag_drops_image_cmd() {
        let run = RunOverrides {
            entrypoint: Some("sh".into()),
            ..Default::default()
        };
        assert_eq!(
            plan_process(&image(), &run, "h", no_host).unwrap().args,
            s(&["sh"])
        );
        let run = RunOverrides {
            entrypoint: Some("sh".into()),
            cmd: s(&["-c", "true"]),
            ..Default::default()
        };
        assert_eq!(
            plan_process(&image(), &run, "h", no_host).unwrap().args,
            s(&["sh", "-c", "true"])
        );
        let run = RunOverrides {
            entrypoint: Some(String::new()),
            cmd: s(&["ls"]),
            ..Default::default()
        };
        assert_eq!(
            plan_process(&image(), &run, "h", no_host).unwrap().args,
            s(&["ls"])
        );
    }

    #[test]
    fn flags_override_env_workdir_user() {
        let run = RunOverrides {
            env: s(&["A=flag", "B=2", "FROM_HOST", "UNSET_ON_HOST"]),
            workdir: Some("/tmp".into()),
            user: Some("0:0".into()),
            ..Default::default()
        };
        let host = |k: &str| (k == "FROM_HOST").then(|| "hostval".to_string());
        let p = plan_process(&image(), &run, "h", host).unwrap();
        assert_eq!(
            p.env,
            s(&[
                "HOSTNAME=h",
                "PATH=/img/bin",
                "A=flag",
                "B=2",
                "FROM_HOST=hostval"
            ])
        );
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/tmp", "0:0"));
    }

    #[test]
    fn defaults_when_image_is_bare() {
        let bare = ImageDefaults {
            cmd: s(&["sh"]),
            ..Default::default()
        };
        let p = plan_process(&bare, &RunOverrides::default(), "h", no_host).unwrap();
        assert_eq!(p.env[0], format!("PATH={DEFAULT_PATH}"));
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/", ""));
    }

    #[test]
    fn errors_name_the_problem() {
        let bare = ImageDefaults::default();
        assert_eq!(
            plan_process(&bare, &RunOverrides::default(), "h", no_host),
            Err(SpecError::NoCommand)
        );
        let run = RunOverrides {
            workdir: Some("rel".into()),
            ..Default::default()
        };
        assert_eq!(
            plan_process(&image(), &run, "h", no_host),
            Err(SpecError::RelativeWorkdir("rel".into()))
        );
        let run = RunOverrides {
            env: s(&["=x"]),
            ..Default::default()
        };
        assert_eq!(
            plan_process(&image(), &run, "h", no_host),
            Err(SpecError::BadEnv("=x".into()))
        );
    }
}
