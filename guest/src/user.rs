//! Resolves a container's `user` string against the container's own /etc/passwd and /etc/group
//! (never the guest's, and never through NSS).

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 6 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

/// (name, gid, members) of each group line.
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolves `""`, `name`, `uid`, `name:group`, `uid:gid` and mixes as Docker does: a numeric uid
/// need not exist in /etc/passwd; a name must.
pub fn resolve(user: &str, passwd: &str, group: &str) -> Result<ResolvedUser> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let entry =
        passwd_entries(passwd).find(|e| e.name == user_part || e.uid.to_string() == user_part);
    let (uid, mut gid, home, name) = match (&entry, user_part.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, e.home.to_string(), Some(e.name)),
        (None, Ok(uid)) => (uid, 0, "/".to_string(), None),
        (None, Err(_)) => {
            return Err(Error::InvalidArgument(format!(
                "user {user_part}: no matching entry in the container's /etc/passwd"
            )));
        }
    };

    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match group_entries(group).find(|(n, id, _)| *n == g || id.to_string() == g) {
            Some((_, id, _)) => id,
            None => g.parse().map_err(|_| {
                Error::InvalidArgument(format!(
                    "group {g}: no matching entry in the container's /etc/group"
                ))
            })?,
        };
    }

    let mut additional_gids: Vec<u32> = match (name, group_part) {
        // An explicit group replaces the supplementary groups, as in Docker.
        (Some(name), None) => group_entries(group)
            .filter(|(_, _, members)| members.contains(&name))
            .map(|(_, id, _)| id)
            .filter(|id| *id != gid)
            .collect(),
        _ => Vec::new(),
    };
    additional_gids.dedup();

    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// A file owner's uid: a number (need not exist), a name from the container's /etc/passwd,
/// or "" for root. Errors: [`Error::InvalidArgument`] for an unknown name.
pub fn uid(user: &str, passwd: &str) -> Result<u32> {
    if user.is_empty() {
        return Ok(0);
    }
    if let Ok(n) = user.parse() {
        return Ok(n);
    }
    passwd_entries(passwd)
        .find(|e| e.name == user)
        .map(|e| e.uid)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "user {user}: no matching entry in the container's /etc/passwd"
            ))
        })
}

/// A file owner's gid, as [`uid`] with the container's /etc/group.
pub fn gid(group: &str, groups: &str) -> Result<u32> {
    if group.is_empty() {
        return Ok(0);
    }
    if let Ok(n) = group.parse() {
        return Ok(n);
    }
    group_entries(groups)
        .find(|(name, _, _)| *name == group)
        .map(|(_, id, _)| id)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "group {group}: no matching entry in the container's /etc/group"
            ))
        })
}

/// Adds `groups` (names from the container's /etc/group, or gids) to `user`'s supplementary
/// groups, as Docker's `--group-add` does. Errors: [`Error::InvalidArgument`] naming a group
/// the container's /etc/group does not have.
pub fn add_groups(user: &mut ResolvedUser, groups: &[String], group: &str) -> Result<()> {
    for g in groups {
        let gid = match group_entries(group).find(|(n, _, _)| n == g) {
            Some((_, id, _)) => id,
            None => g.parse().map_err(|_| {
                Error::InvalidArgument(format!(
                    "additional group {g}: no matching entry in the container's /etc/group"
                ))
            })?,
        };
        if gid != user.gid && !user.additional_gids.contains(&gid) {
            user.additional_gids.push(gid);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
                          app:x:1000:1000::/home/app:/bin/sh\n\
                          broken line\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,root\napp:x:1000:\nstaff:x:50:app\n";

    #[test]
    fn empty_user_is_root() {
        let u = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        assert_eq!(u.additional_gids, [10]);
    }

    #[test]
    fn name_gets_primary_and_supplementary_groups() {
        let u = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, [10, 50]);
        assert_eq!(u.home, "/home/app");
    }

    #[test]
    fn numeric_uid_need_not_exist() {
        let u = resolve("4242", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
    }

    #[test]
    fn explicit_group_by_name_or_number() {
        assert_eq!(resolve("app:wheel", PASSWD, GROUP).unwrap().gid, 10);
        let u = resolve("1:777", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1, 777));
        assert!(u.additional_gids.is_empty());
    }

    #[test]
    fn unknown_names_are_named_in_the_error() {
        let e = resolve("nobody", PASSWD, GROUP).unwrap_err().to_string();
        assert!(e.contains("user nobody"), "{e}");
        let e = resolve("app:nogroup", PASSWD, GROUP)
            .unwrap_err()
            .to_string();
        assert!(e.contains("group nogroup"), "{e}");
    }

    #[test]
    fn file_owners_by_number_or_name() {
        assert_eq!(uid("", PASSWD).unwrap(), 0);
        assert_eq!(uid("app", PASSWD).unwrap(), 1000);
        assert_eq!(uid("4242", PASSWD).unwrap(), 4242);
        assert!(uid("nobody", PASSWD).is_err());
        assert_eq!(gid("staff", GROUP).unwrap(), 50);
        assert_eq!(gid("", GROUP).unwrap(), 0);
        assert!(
            gid("nogroup", GROUP)
                .unwrap_err()
                .to_string()
                .contains("group nogroup")
        );
    }

    #[test]
    fn additional_groups_are_added_by_name_or_gid() {
        let passwd = "app:x:1000:1000:app:/home/app:/bin/sh\n";
        let group = "app:x:1000:\nstaff:x:50:\n";
        let mut u = resolve("app:app", passwd, group).unwrap();
        add_groups(&mut u, &["staff".into(), "77".into(), "app".into()], group).unwrap();
        assert_eq!(u.additional_gids, vec![50, 77]);
        let e = add_groups(&mut u, &["adm".into()], group).unwrap_err();
        assert!(e.to_string().contains("additional group adm"), "{e}");
    }
}
