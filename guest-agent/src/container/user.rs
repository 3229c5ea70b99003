//! Resolves an image's `User` ("", "uid", "uid:gid", "name", "name:group")
//! against the container's /etc/passwd and /etc/group, as Docker does.

use thiserror::Error;

use crate::process::Credentials;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 {
            return None;
        }
        Some(PasswdEntry {
            name: fields[0],
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
            home: fields[5],
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 4 {
            return None;
        }
        let members = fields[3].split(',').filter(|m| !m.is_empty()).collect();
        Some((fields[0], fields[2].parse().ok()?, members))
    })
}

/// Resolves `spec`; `passwd` and `group` are the container's files (empty
/// when missing).
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Credentials, UserError> {
    let (user, group_spec) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };

    let entry = passwd_entries(passwd).find(|e| e.name == user || user.parse() == Ok(e.uid));
    let (uid, mut gid, home, name) = match (entry, user.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, e.home.to_string(), Some(e.name.to_string())),
        (None, Ok(uid)) => (
            uid,
            0,
            if uid == 0 { "/root" } else { "/" }.to_string(),
            None,
        ),
        (None, Err(_)) => return Err(UserError::UnknownUser(user.to_string())),
    };

    if let Some(g) = group_spec.filter(|g| !g.is_empty()) {
        gid = match group_entries(group).find(|(n, id, _)| *n == g || g.parse() == Ok(*id)) {
            Some((_, id, _)) => id,
            None => g
                .parse()
                .map_err(|_| UserError::UnknownGroup(g.to_string()))?,
        };
    }

    let mut groups = vec![gid];
    if let Some(name) = &name {
        for (_, id, members) in group_entries(group) {
            if members.contains(&name.as_str()) && !groups.contains(&id) {
                groups.push(id);
            }
        }
    }
    Ok(Credentials {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nbroken line\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\nstaff:x:50:\n";

    #[test]
    fn empty_user_is_root() {
        let c = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((c.uid, c.gid, c.home.as_str()), (0, 0, "/root"));
    }

    #[test]
    fn names_resolve_with_supplementary_groups() {
        let c = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!((c.uid, c.gid, c.home.as_str()), (1000, 1000, "/home/app"));
        assert_eq!(c.groups, vec![1000, 10]);
    }

    #[test]
    fn numeric_users_and_groups() {
        let c = resolve("1000:staff", PASSWD, GROUP).unwrap();
        assert_eq!((c.uid, c.gid), (1000, 50));
        let c = resolve("4242:4343", PASSWD, GROUP).unwrap();
        assert_eq!((c.uid, c.gid, c.home.as_str()), (4242, 4343, "/"));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            resolve("nobody", PASSWD, GROUP),
            Err(UserError::UnknownUser("nobody".into()))
        );
        assert_eq!(
            resolve("app:nogroup", PASSWD, GROUP),
            Err(UserError::UnknownGroup("nogroup".into()))
        );
    }

    #[test]
    fn missing_files_still_allow_numeric_ids() {
        let c = resolve("0", "", "").unwrap();
        assert_eq!((c.uid, c.gid, c.home.as_str()), (0, 0, "/root"));
        assert!(resolve("app", "", "").is_err());
    }
}
