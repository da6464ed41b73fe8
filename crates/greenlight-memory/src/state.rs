//! The data behind the store's lock: the jobs and the indexes that keep
//! every operation away from a full scan on the hot path.
//!
//! Invariants, restored before the lock is released:
//! - every pending job is in exactly one of `ready` and `delayed`;
//! - every executing job is in `leases`, under its current lease;
//! - `by_execution_id` and `by_idempotency_key` name exactly the stored
//!   jobs that carry those values.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use greenlight_core::chrono::{DateTime, Utc};
use greenlight_core::uuid::{Builder, Uuid};
use greenlight_core::{
    AnyJob, Error, Executing, ExecutionId, IdempotencyKey, Job, JobId, NewJob, Pending, Result,
    Status, WorkerId,
};

/// Where a ready job sits in the claim order: highest priority first, then
/// earliest `run_at`, then id, exactly as the trait documents. The slot
/// rides along (ids are unique, so it never decides the order) and spares
/// the claim a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ReadyKey {
    priority: Reverse<i32>,
    run_at: DateTime<Utc>,
    id: JobId,
    slot: Slot,
}

impl ReadyKey {
    fn of(job: &Job<Pending>, slot: Slot) -> Self {
        let data = job.data();
        Self { priority: Reverse(data.priority), run_at: data.run_at, id: data.id, slot }
    }
}

/// A pending job that is not ready yet, ordered by when it becomes ready.
/// The priority and slot ride along so promotion needs no lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DelayedKey {
    run_at: DateTime<Utc>,
    id: JobId,
    priority: i32,
    slot: Slot,
}

impl DelayedKey {
    fn of(job: &Job<Pending>, slot: Slot) -> Self {
        let data = job.data();
        Self { run_at: data.run_at, id: data.id, priority: data.priority, slot }
    }

    fn ready(self) -> ReadyKey {
        ReadyKey {
            priority: Reverse(self.priority),
            run_at: self.run_at,
            id: self.id,
            slot: self.slot,
        }
    }
}

/// Where a job lives in [`State::slots`].
///
/// The store makes its own job ids and writes the slot into 32 of their
/// random bits, so finding a job is an index and one comparison, not a
/// hash lookup: with a million jobs kept, a hash table's lookups miss the
/// cache on every call and cost more than the rest of a transition. The
/// ids stay valid version 4 UUIDs with 90 random bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Slot(usize);

impl Slot {
    /// The bytes of an id that hold its slot: the last four, all random
    /// in a version 4 UUID (the version and variant bits are elsewhere).
    const BYTES: std::ops::Range<usize> = 12..16;

    /// The slot an id names, if it names one: any id does, but only the
    /// slot's owner is found there.
    fn named_by(id: JobId) -> Self {
        let bytes = id.0.as_bytes();
        let mut index = [0u8; 4];
        index.copy_from_slice(&bytes[Self::BYTES]);
        Self(u32::from_be_bytes(index) as usize)
    }
}

/// One place for a job: which id owns it (from reservation until the job
/// is deleted), and the job, absent only while a transition has it out.
#[derive(Debug, Default)]
struct Place {
    owner: Option<JobId>,
    job: Option<AnyJob>,
}

/// The jobs and their indexes.
#[derive(Debug)]
pub(crate) struct State {
    /// The jobs. A job keeps its slot for its whole life, so a transition
    /// rewrites the slot in place, and a growing store reallocates one
    /// flat vector rather than rehashing every job.
    slots: Vec<Place>,
    /// Slots freed by `prune`, reused before the vector grows. Every other
    /// slot has an owner.
    free_slots: Vec<usize>,
    ready: BTreeSet<ReadyKey>,
    delayed: BTreeSet<DelayedKey>,
    leases: BTreeSet<(DateTime<Utc>, JobId)>,
    by_execution_id: HashMap<ExecutionId, JobId>,
    by_idempotency_key: HashMap<IdempotencyKey, JobId>,
    /// Splitmix64 state for job ids. Asking the operating system for
    /// randomness on every enqueue would cost more than the rest of the
    /// enqueue; seeding once from it keeps ids unpredictable across stores.
    id_seed: u64,
}

impl State {
    pub(crate) fn new() -> Self {
        let seed = Uuid::new_v4().as_u64_pair();
        Self {
            slots: Vec::new(),
            free_slots: Vec::new(),
            ready: BTreeSet::new(),
            delayed: BTreeSet::new(),
            leases: BTreeSet::new(),
            by_execution_id: HashMap::new(),
            by_idempotency_key: HashMap::new(),
            id_seed: seed.0 ^ seed.1,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len() - self.free_slots.len()
    }

    pub(crate) fn jobs(&self) -> impl Iterator<Item = &AnyJob> {
        self.slots.iter().filter_map(|place| place.job.as_ref())
    }

    /// Fails unless `count` more jobs can be reserved, so that a batch
    /// checks before it writes anything.
    pub(crate) fn check_room(&self, count: usize) -> Result<()> {
        let unused = Self::MAX_SLOTS.saturating_sub(self.slots.len() as u64);
        if count as u64 > unused.saturating_add(self.free_slots.len() as u64) {
            return Err(Self::full());
        }
        Ok(())
    }

    /// The most slots an id can name (32 bits of it).
    const MAX_SLOTS: u64 = 1 << 32;

    fn full() -> Error {
        Error::storage(format!(
            "memory store is full: it holds {} jobs, the most its ids can name",
            Self::MAX_SLOTS
        ))
    }

    /// A fresh version 4 UUID and the slot it names, which the new job
    /// occupies: [`State::insert_new`] fills it at once.
    ///
    /// No stored job can have the id: a stored job's id names its own
    /// slot, and this slot is free.
    fn reserve(&mut self) -> Result<(JobId, Slot)> {
        let index = self.free_slots.pop().unwrap_or_else(|| {
            self.slots.push(Place::default());
            self.slots.len() - 1
        });
        let Ok(encoded) = u32::try_from(index) else {
            self.slots.pop();
            return Err(Self::full());
        };
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_random().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_random().to_le_bytes());
        bytes[Slot::BYTES].copy_from_slice(&encoded.to_be_bytes());
        let id = JobId(Builder::from_random_bytes(bytes).into_uuid());
        self.slots[index].owner = Some(id);
        Ok((id, Slot(index)))
    }

    fn next_random(&mut self) -> u64 {
        self.id_seed = self.id_seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.id_seed;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// The slot of the stored job `id`, if there is one.
    fn slot(&self, id: JobId) -> Option<Slot> {
        let slot = Slot::named_by(id);
        (self.slots.get(slot.0)?.owner == Some(id)).then_some(slot)
    }

    pub(crate) fn get(&self, id: JobId) -> Option<&AnyJob> {
        self.slots[self.slot(id)?.0].job.as_ref()
    }

    /// Stores `job` in its slot.
    fn store(&mut self, slot: Slot, job: AnyJob) {
        debug_assert_eq!(self.slot(job.id()), Some(slot), "a job goes back to its own slot");
        self.slots[slot.0].job = Some(job);
    }

    /// Takes a job out of its slot, which stays reserved for it: the
    /// caller stores what the job becomes in the slot returned.
    fn take(&mut self, id: JobId) -> Option<(Slot, AnyJob)> {
        let slot = self.slot(id)?;
        Some((slot, self.slots[slot.0].job.take()?))
    }

    pub(crate) fn id_for_key(&self, key: &IdempotencyKey) -> Option<JobId> {
        self.by_idempotency_key.get(key).copied()
    }

    pub(crate) fn id_for_execution_id(&self, execution_id: &ExecutionId) -> Option<JobId> {
        self.by_execution_id.get(execution_id).copied()
    }

    /// Stores `job` as a new pending job under a fresh id, enqueued at
    /// `now`, and returns it. The caller has checked that its key and
    /// execution id are free.
    pub(crate) fn insert_new(&mut self, job: NewJob, now: DateTime<Utc>) -> Result<Job<Pending>> {
        let (id, slot) = self.reserve()?;
        let pending = job.into_pending(id, now);
        let data = pending.data();
        if let Some(key) = &data.idempotency_key {
            self.by_idempotency_key.insert(key.clone(), id);
        }
        if let Some(execution_id) = &data.execution_id {
            self.by_execution_id.insert(execution_id.clone(), id);
        }
        self.put_pending(slot, pending.clone(), now);
        Ok(pending)
    }

    /// Files a pending job under `ready` or `delayed` and stores it.
    pub(crate) fn put_pending(&mut self, slot: Slot, job: Job<Pending>, now: DateTime<Utc>) {
        if job.is_ready(now) {
            self.ready.insert(ReadyKey::of(&job, slot));
        } else {
            self.delayed.insert(DelayedKey::of(&job, slot));
        }
        self.store(slot, job.into_any());
    }

    /// Files an executing job under its lease and stores it.
    pub(crate) fn put_executing(&mut self, slot: Slot, job: Job<Executing>) {
        self.leases.insert((job.state().lease_expires_at, job.id()));
        self.store(slot, job.into_any());
    }

    /// Stores a job in a terminal status (or any job whose indexes the
    /// caller has already settled).
    pub(crate) fn put_unindexed(&mut self, slot: Slot, job: AnyJob) {
        self.store(slot, job);
    }

    /// Claims up to `limit` ready jobs in claim order for `worker_id`.
    pub(crate) fn claim(
        &mut self,
        worker_id: &WorkerId,
        lease: Duration,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job<Executing>>> {
        // Promote every delayed job whose time has come.
        while let Some(first) = self.delayed.first().copied() {
            if first.run_at > now {
                break;
            }
            self.delayed.pop_first();
            self.ready.insert(first.ready());
        }

        let mut claimed = Vec::with_capacity(limit.min(self.ready.len()));
        while claimed.len() < limit {
            let Some(key) = self.ready.pop_first() else { break };
            // Only a clock set backwards can leave a job in `ready` whose
            // time has not come; it waits in `delayed` again.
            if key.run_at > now {
                let delayed = DelayedKey {
                    run_at: key.run_at,
                    id: key.id,
                    priority: key.priority.0,
                    slot: key.slot,
                };
                self.delayed.insert(delayed);
                continue;
            }
            let slot = key.slot;
            let Some(AnyJob::Pending(job)) = self.slots[slot.0].job.take() else {
                return Err(Error::storage(format!(
                    "memory store index names job {} as ready, but it is not pending",
                    key.id
                )));
            };
            let job = job.claim(worker_id.clone(), lease, now);
            claimed.push(job.clone());
            self.put_executing(slot, job);
        }
        Ok(claimed)
    }

    /// Removes a pending job from whichever of `ready` and `delayed` holds
    /// it and hands it out; the caller stores what it becomes.
    pub(crate) fn take_pending(&mut self, id: JobId) -> Option<(Slot, Job<Pending>)> {
        if self.get(id)?.status() != Status::Pending {
            return None;
        }
        let (slot, AnyJob::Pending(job)) = self.take(id)? else { return None };
        if !self.ready.remove(&ReadyKey::of(&job, slot)) {
            self.delayed.remove(&DelayedKey::of(&job, slot));
        }
        Some((slot, job))
    }

    /// Hands out the executing job the caller holds (same attempt), taken
    /// out of the lease index; the caller stores what it becomes.
    pub(crate) fn take_held(&mut self, held: &Job<Executing>) -> Result<(Slot, Job<Executing>)> {
        let id = held.id();
        let slot = self.held_slot(held)?;
        let Some(AnyJob::Executing(job)) = self.slots[slot.0].job.take() else {
            return Err(Error::storage(format!("memory store lost job {id} under its lock")));
        };
        self.leases.remove(&(job.state().lease_expires_at, id));
        Ok((slot, job))
    }

    /// Checks that the job holding `held`'s attempt is current, without
    /// taking it.
    pub(crate) fn check_held(&self, held: &Job<Executing>) -> Result<&Job<Executing>> {
        match &self.slots[self.held_slot(held)?.0].job {
            Some(AnyJob::Executing(job)) => Ok(job),
            _ => Err(Error::storage(format!("memory store lost job {} under its lock", held.id()))),
        }
    }

    /// The slot of the job whose current attempt is `held`'s.
    fn held_slot(&self, held: &Job<Executing>) -> Result<Slot> {
        let id = held.id();
        let slot = self.slot(id).ok_or(Error::NotFound { id })?;
        match &self.slots[slot.0].job {
            Some(AnyJob::Executing(job)) if job.attempt() == held.attempt() => Ok(slot),
            Some(_) => Err(Error::LeaseLost { id, attempt: held.attempt() }),
            None => Err(Error::storage(format!("memory store lost job {id} under its lock"))),
        }
    }

    /// Points `execution_id` at `id`, dropping the job's previous one.
    pub(crate) fn index_execution_id(
        &mut self,
        id: JobId,
        previous: Option<&ExecutionId>,
        execution_id: &ExecutionId,
    ) {
        if let Some(previous) = previous {
            self.by_execution_id.remove(previous);
        }
        self.by_execution_id.insert(execution_id.clone(), id);
    }

    /// The ids of executing jobs whose lease is over at `now`, taken out of
    /// the lease index, earliest expiry first.
    pub(crate) fn take_expired(&mut self, now: DateTime<Utc>) -> Vec<JobId> {
        let mut expired = Vec::new();
        while let Some(&(lease_expires_at, id)) = self.leases.first() {
            // A lease is over at the instant it expires.
            if lease_expires_at > now {
                break;
            }
            self.leases.pop_first();
            expired.push(id);
        }
        expired
    }

    /// Takes a job out of its slot, to be stored again there by the
    /// caller. Only for jobs whose index entries the caller handles itself.
    pub(crate) fn remove_raw(&mut self, id: JobId) -> Option<(Slot, AnyJob)> {
        self.take(id)
    }

    /// Deletes a terminal job and its unique-index entries.
    pub(crate) fn delete_terminal(&mut self, id: JobId) {
        let Some(slot) = self.slot(id) else { return };
        let place = std::mem::take(&mut self.slots[slot.0]);
        self.free_slots.push(slot.0);
        let Some(job) = place.job else { return };
        debug_assert!(job.status().is_terminal(), "only terminal jobs are deleted");
        let data = job.data();
        if let Some(key) = &data.idempotency_key {
            self.by_idempotency_key.remove(key);
        }
        if let Some(execution_id) = &data.execution_id {
            self.by_execution_id.remove(execution_id);
        }
    }
}
