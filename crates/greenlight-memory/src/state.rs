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
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use greenlight_core::chrono::{DateTime, Utc};
use greenlight_core::uuid::{Builder, Uuid};
use greenlight_core::{
    AnyJob, Error, Executing, ExecutionId, IdempotencyKey, Job, JobId, Pending, Result, Status,
    WorkerId,
};

/// Where a ready job sits in the claim order: highest priority first, then
/// earliest `run_at`, then id, exactly as the trait documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ReadyKey {
    priority: Reverse<i32>,
    run_at: DateTime<Utc>,
    id: JobId,
}

impl ReadyKey {
    fn of(job: &Job<Pending>) -> Self {
        let data = job.data();
        Self { priority: Reverse(data.priority), run_at: data.run_at, id: data.id }
    }
}

/// A pending job that is not ready yet, ordered by when it becomes ready.
/// The priority rides along so promotion needs no lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DelayedKey {
    run_at: DateTime<Utc>,
    id: JobId,
    priority: i32,
}

impl DelayedKey {
    fn of(job: &Job<Pending>) -> Self {
        let data = job.data();
        Self { run_at: data.run_at, id: data.id, priority: data.priority }
    }

    fn ready(self) -> ReadyKey {
        ReadyKey { priority: Reverse(self.priority), run_at: self.run_at, id: self.id }
    }
}

/// Hashes job ids cheaply. Job ids are random UUIDs chosen by the store
/// itself, so their bits are already well spread and nobody outside can
/// pick colliding keys; the protection of `SipHash` would buy nothing here and
/// costs a good share of a lifecycle.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            // The Fx hash step: a rotate, a xor and one multiplication by
            // an odd constant, enough to mix already random bits.
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
}

type IdMap<V> = HashMap<JobId, V, BuildHasherDefault<IdHasher>>;

/// The jobs and their indexes.
#[derive(Debug)]
pub(crate) struct State {
    /// The jobs, each in a slot that `slot_of` names. A job keeps its slot
    /// for its whole life, so a transition rewrites the slot in place
    /// instead of moving a few hundred bytes through a hash map, and a
    /// growing store reallocates one flat vector rather than rehashing
    /// every job.
    slots: Vec<Option<AnyJob>>,
    slot_of: IdMap<usize>,
    /// Slots freed by `prune`, reused before the vector grows.
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
            slot_of: IdMap::default(),
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
        self.slot_of.len()
    }

    pub(crate) fn jobs(&self) -> impl Iterator<Item = &AnyJob> {
        self.slots.iter().flatten()
    }

    /// A version 4 UUID not used by any stored job.
    pub(crate) fn fresh_id(&mut self) -> JobId {
        loop {
            let high = self.next_random();
            let low = self.next_random();
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&high.to_le_bytes());
            bytes[8..].copy_from_slice(&low.to_le_bytes());
            let id = JobId(Builder::from_random_bytes(bytes).into_uuid());
            // A collision among 122 random bits is practically impossible,
            // but the check is one lookup and turns "practically" into
            // "never" within this store.
            if !self.slot_of.contains_key(&id) {
                return id;
            }
        }
    }

    fn next_random(&mut self) -> u64 {
        self.id_seed = self.id_seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.id_seed;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    pub(crate) fn get(&self, id: JobId) -> Option<&AnyJob> {
        self.slots[*self.slot_of.get(&id)?].as_ref()
    }

    /// Stores `job` in its slot, giving a new job a slot first.
    fn store(&mut self, job: AnyJob) {
        if let Some(&slot) = self.slot_of.get(&job.id()) {
            self.slots[slot] = Some(job);
            return;
        }
        let id = job.id();
        let slot = if let Some(slot) = self.free_slots.pop() {
            self.slots[slot] = Some(job);
            slot
        } else {
            self.slots.push(Some(job));
            self.slots.len() - 1
        };
        self.slot_of.insert(id, slot);
    }

    /// Takes a job out of its slot, which stays reserved for it: the
    /// caller stores what the job becomes.
    fn take(&mut self, id: JobId) -> Option<AnyJob> {
        self.slots[*self.slot_of.get(&id)?].take()
    }

    pub(crate) fn id_for_key(&self, key: &IdempotencyKey) -> Option<JobId> {
        self.by_idempotency_key.get(key).copied()
    }

    pub(crate) fn id_for_execution_id(&self, execution_id: &ExecutionId) -> Option<JobId> {
        self.by_execution_id.get(execution_id).copied()
    }

    /// Stores a new pending job. The caller has checked that its id, key
    /// and execution id are free.
    pub(crate) fn insert_new(&mut self, job: Job<Pending>, now: DateTime<Utc>) {
        let data = job.data();
        if let Some(key) = &data.idempotency_key {
            self.by_idempotency_key.insert(key.clone(), data.id);
        }
        if let Some(execution_id) = &data.execution_id {
            self.by_execution_id.insert(execution_id.clone(), data.id);
        }
        self.put_pending(job, now);
    }

    /// Files a pending job under `ready` or `delayed` and stores it.
    pub(crate) fn put_pending(&mut self, job: Job<Pending>, now: DateTime<Utc>) {
        if job.is_ready(now) {
            self.ready.insert(ReadyKey::of(&job));
        } else {
            self.delayed.insert(DelayedKey::of(&job));
        }
        self.store(job.into_any());
    }

    /// Files an executing job under its lease and stores it.
    pub(crate) fn put_executing(&mut self, job: Job<Executing>) {
        self.leases.insert((job.state().lease_expires_at, job.id()));
        self.store(job.into_any());
    }

    /// Stores a job in a terminal status (or any job whose indexes the
    /// caller has already settled).
    pub(crate) fn put_unindexed(&mut self, job: AnyJob) {
        self.store(job);
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
                let delayed =
                    DelayedKey { run_at: key.run_at, id: key.id, priority: key.priority.0 };
                self.delayed.insert(delayed);
                continue;
            }
            let Some(AnyJob::Pending(job)) = self.take(key.id) else {
                return Err(Error::storage(format!(
                    "memory store index names job {} as ready, but it is not pending",
                    key.id
                )));
            };
            let job = job.claim(worker_id.clone(), lease, now);
            claimed.push(job.clone());
            self.put_executing(job);
        }
        Ok(claimed)
    }

    /// Removes a pending job from whichever of `ready` and `delayed` holds
    /// it and hands it out; the caller stores what it becomes.
    pub(crate) fn take_pending(&mut self, id: JobId) -> Option<Job<Pending>> {
        if self.get(id)?.status() != Status::Pending {
            return None;
        }
        let AnyJob::Pending(job) = self.take(id)? else { return None };
        if !self.ready.remove(&ReadyKey::of(&job)) {
            self.delayed.remove(&DelayedKey::of(&job));
        }
        Some(job)
    }

    /// Hands out the executing job the caller holds (same attempt), taken
    /// out of the lease index; the caller stores what it becomes.
    pub(crate) fn take_held(&mut self, held: &Job<Executing>) -> Result<Job<Executing>> {
        let id = held.id();
        self.check_held(held)?;
        let Some(AnyJob::Executing(job)) = self.take(id) else {
            return Err(Error::storage(format!("memory store lost job {id} under its lock")));
        };
        self.leases.remove(&(job.state().lease_expires_at, id));
        Ok(job)
    }

    /// Checks that the job holding `held`'s attempt is current, without
    /// taking it.
    pub(crate) fn check_held(&self, held: &Job<Executing>) -> Result<&Job<Executing>> {
        let id = held.id();
        match self.get(id) {
            None => Err(Error::NotFound { id }),
            Some(AnyJob::Executing(job)) if job.attempt() == held.attempt() => Ok(job),
            Some(_) => Err(Error::LeaseLost { id, attempt: held.attempt() }),
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

    /// Takes a job out of the map, to be stored again by the caller.
    /// Only for jobs whose index entries the caller handles itself.
    pub(crate) fn remove_raw(&mut self, id: JobId) -> Option<AnyJob> {
        self.take(id)
    }

    /// Deletes a terminal job and its unique-index entries.
    pub(crate) fn delete_terminal(&mut self, id: JobId) {
        let Some(slot) = self.slot_of.remove(&id) else { return };
        let Some(job) = self.slots[slot].take() else { return };
        self.free_slots.push(slot);
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
