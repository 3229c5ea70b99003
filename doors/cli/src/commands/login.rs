use std::io::Read;

use anyhow::{bail, Context, Result};

use crate::cli::{Cli, LoginArgs, LogoutArgs};
use hull_image::auth::{self, AuthFile, Credentials};

pub async fn login(cli: &Cli, args: &LoginArgs) -> Result<i32> {
    let password = match (&args.password, args.password_stdin) {
        (Some(p), false) => p.clone(),
        (None, true) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("read the password from stdin")?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        _ => bail!("give the password with --password-stdin (or -p)"),
    };
    let creds = Credentials {
        username: args.username.clone(),
        password,
    };
    auth::verify(&args.registry, &creds, args.plain_http).await?;
    AuthFile::new(&cli.root).set(&args.registry, &creds)?;
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(cli: &Cli, args: &LogoutArgs) -> Result<i32> {
    if AuthFile::new(&cli.root).remove(&args.registry)? {
        println!("Removing login credentials for {}", args.registry);
    } else {
        println!("Not logged in to {}", args.registry);
    }
    Ok(0)
}
