//! Who may use the agent: decided for every request from the kernel's peer credentials of its
//! connection (`SO_PEERCRED`), never from anything the caller sends, against the operator policy
//! in force at that moment (a reload publishes a new [`Policy`]).

use nix::unistd::{Gid, Group, Uid, User};

/// The caller of one socket connection, as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Process id, when the kernel reports one.
    pub pid: Option<i32>,
    /// User name, when the uid has one.
    pub user: Option<String>,
}

impl Caller {
    /// Reads the peer credentials of `stream`, and the user name from the user database on
    /// the blocking pool: the agent serves every connection from one event loop, and a user
    /// database behind NSS (LDAP, sssd) may take its time.
    pub async fn of(stream: &tokio::net::UnixStream) -> std::io::Result<Self> {
        let cred = stream.peer_cred()?;
        let uid = cred.uid();
        let user = tokio::task::spawn_blocking(move || {
            User::from_uid(Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .await
        .map_err(std::io::Error::other)?;
        Ok(Self {
            uid,
            gid: cred.gid(),
            pid: cred.pid(),
            user,
        })
    }
}

/// The authorization policy: root, the agent's own uid, `Operator.AllowedUsers` (names or
/// numeric uids) and members of `Operator.AllowedGroups` (names or numeric gids; primary or
/// supplementary membership).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    own_uid: u32,
    users: Vec<String>,
    groups: Vec<String>,
}

impl Policy {
    /// The policy for an agent running as `own_uid`.
    pub fn new(own_uid: u32, users: &[String], groups: &[String]) -> Self {
        Self {
            own_uid,
            users: users.to_vec(),
            groups: groups.to_vec(),
        }
    }

    /// The policy `config` sets for an agent running as `own_uid`.
    pub fn of(own_uid: u32, config: &netclaw_core::config::Config) -> Self {
        Self::new(
            own_uid,
            config.operator().allowed_users(),
            config.operator().allowed_groups(),
        )
    }

    /// Whether `caller` may use the agent.
    pub fn allows(&self, caller: &Caller) -> bool {
        if caller.uid == 0 || caller.uid == self.own_uid {
            return true;
        }
        let uid = caller.uid.to_string();
        if self
            .users
            .iter()
            .any(|u| *u == uid || caller.user.as_deref() == Some(u.as_str()))
        {
            return true;
        }
        self.groups.iter().any(|g| in_group(caller, g))
    }

    /// The message a refused caller gets: which settings to change.
    pub fn refusal(&self, caller: &Caller) -> String {
        let who = match &caller.user {
            Some(name) => format!("user {name} (uid {})", caller.uid),
            None => format!("uid {}", caller.uid),
        };
        format!(
            "{who} may not use the operator agent; add the user to Operator.AllowedUsers or to a \
             group in Operator.AllowedGroups in netclaw.json, then reload the agent \
             (systemctl reload netclaw-operator-agent)"
        )
    }
}

fn in_group(caller: &Caller, group: &str) -> bool {
    let found = match group.parse::<u32>() {
        Ok(gid) => Group::from_gid(Gid::from_raw(gid))
            .ok()
            .flatten()
            .map_or_else(
                || Some((gid, Vec::new())),
                |g| Some((g.gid.as_raw(), g.mem)),
            ),
        Err(_) => Group::from_name(group)
            .ok()
            .flatten()
            .map(|g| (g.gid.as_raw(), g.mem)),
    };
    let Some((gid, members)) = found else {
        return false;
    };
    if caller.gid == gid {
        return true;
    }
    match &caller.user {
        Some(name) => {
            if members.iter().any(|m| m == name) {
                return true;
            }
            // Primary group from the user database.
            User::from_name(name)
                .ok()
                .flatten()
                .is_some_and(|u| u.gid.as_raw() == gid)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(uid: u32, gid: u32, user: Option<&str>) -> Caller {
        Caller {
            uid,
            gid,
            pid: Some(1),
            user: user.map(str::to_owned),
        }
    }

    #[test]
    fn root_and_own_uid_are_always_allowed() {
        let p = Policy::new(990, &[], &[]);
        assert!(p.allows(&caller(0, 0, Some("root"))));
        assert!(p.allows(&caller(990, 990, None)));
        assert!(!p.allows(&caller(1000, 1000, Some("ana"))));
    }

    #[test]
    fn users_by_name_or_uid() {
        let p = Policy::new(990, &["ana".into(), "1001".into()], &[]);
        assert!(p.allows(&caller(1000, 1000, Some("ana"))));
        assert!(p.allows(&caller(1001, 1001, None)));
        assert!(!p.allows(&caller(1002, 1002, Some("bo"))));
        let msg = p.refusal(&caller(1002, 1002, Some("bo")));
        assert!(msg.contains("Operator.AllowedUsers") && msg.contains("Operator.AllowedGroups"));
        assert!(msg.contains("user bo (uid 1002)"));
    }

    #[test]
    fn groups_by_numeric_gid_match_the_primary_gid() {
        let p = Policy::new(990, &[], &["4242".into()]);
        assert!(p.allows(&caller(1000, 4242, None)));
        assert!(!p.allows(&caller(1000, 4243, None)));
        // A group name that does not exist admits nobody.
        let p = Policy::new(990, &[], &["no-such-group-netclaw".into()]);
        assert!(!p.allows(&caller(1000, 4242, Some("ana"))));
    }
}
