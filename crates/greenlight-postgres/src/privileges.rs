//! What each kind of session needs on the queue's table, as SECURITY.md
//! lists it, so a process can check its role before it starts work.

/// A kind of session, by what it does to `greenlight_queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// Claims and finishes jobs, rescues expired leases, prunes, and runs
    /// the operator commands: `SELECT`, `UPDATE`, `DELETE`.
    Worker,
    /// Enqueues jobs and reads them back: `SELECT`, `INSERT`.
    Producer,
}

impl Role {
    /// The table privileges this kind of session needs, no more.
    pub fn privileges(self) -> &'static [&'static str] {
        match self {
            Role::Worker => &["SELECT", "UPDATE", "DELETE"],
            Role::Producer => &["SELECT", "INSERT"],
        }
    }

    /// The role's name in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Worker => "a worker",
            Role::Producer => "a producer",
        }
    }
}

#[derive(diesel::QueryableByName)]
pub(crate) struct Missing {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) privilege: String,
}
