//! The simulator handle: state, settings, faults and counters behind one lock.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::clock::{Clock, SystemClock};
use crate::model::{Faults, Settings, Stats};
use crate::seed::{SeedConfig, generate_with_artefacts, generate_with_projects};
use crate::state::Instance;

/// Everything that changes while the simulator runs.
#[derive(Debug)]
pub(crate) struct SimState {
    pub inst: Instance,
    pub settings: Settings,
    pub faults: Faults,
    pub fault_rng: ChaCha8Rng,
    /// TestRail requests seen since the faults were last set (for `fail_after_requests`).
    pub fault_seen: u64,
    pub stats: Stats,
    /// The current rate-limit window (minute since the epoch) and the requests admitted in it.
    pub window: (u64, u32),
}

#[derive(Debug)]
struct Inner {
    state: Mutex<SimState>,
    clock: Arc<dyn Clock>,
    seed: SeedConfig,
    seed_projects: Option<u32>,
    seed_results: u32,
    initial_settings: Settings,
    seeded: Instance,
}

/// A simulated TestRail instance. Cheap to clone; clones share the same state.
#[derive(Debug, Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

impl Sim {
    /// A simulator seeded from `seed`, with `settings` as its starting (and reset) settings.
    pub fn new(seed: SeedConfig, settings: Settings) -> Self {
        Self::with_clock(seed, settings, Arc::new(SystemClock))
    }

    /// Like [`Sim::new`] with a replaceable clock for the rate-limit window (and the time a
    /// project is completed).
    pub fn with_clock(seed: SeedConfig, settings: Settings, clock: Arc<dyn Clock>) -> Self {
        Self::with_projects(seed, None, settings, clock)
    }

    /// Like [`Sim::with_clock`], seeding `projects` projects (`None`: the default count,
    /// [`crate::seed::default_project_count`]).
    pub fn with_projects(
        seed: SeedConfig,
        projects: Option<u32>,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let seeded = generate_with_projects(&seed, projects);
        Self::from_seeded(seed, projects, 0, seeded, settings, clock)
    }

    /// Like [`Sim::with_projects`], also seeding artefacts with about `results` results
    /// ([`crate::seed::generate_with_artefacts`]), relative to the clock's now when called.
    /// `results` of 0 is [`Sim::with_projects`].
    pub fn with_artefacts(
        seed: SeedConfig,
        projects: Option<u32>,
        results: u32,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let now = i64::try_from(clock.now().as_secs()).unwrap_or(i64::MAX);
        let seeded = generate_with_artefacts(&seed, projects, results, now);
        Self::from_seeded(seed, projects, results, seeded, settings, clock)
    }

    fn from_seeded(
        seed: SeedConfig,
        projects: Option<u32>,
        results: u32,
        seeded: Instance,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let state = SimState {
            inst: seeded.clone(),
            settings: settings.clone(),
            faults: Faults::default(),
            fault_rng: ChaCha8Rng::seed_from_u64(0),
            fault_seen: 0,
            stats: Stats::default(),
            window: (0, 0),
        };
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                clock,
                seed,
                seed_projects: projects,
                seed_results: results,
                initial_settings: settings,
                seeded,
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SimState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn clock(&self) -> &dyn Clock {
        self.inner.clock.as_ref()
    }

    pub fn seed_config(&self) -> &SeedConfig {
        &self.inner.seed
    }

    /// The project count the simulator was seeded with, when one was given.
    pub fn seed_projects(&self) -> Option<u32> {
        self.inner.seed_projects
    }

    /// The result count the simulator's artefacts were seeded with (0: none).
    pub fn seed_results(&self) -> u32 {
        self.inner.seed_results
    }

    /// Back to the seeded state; settings, faults and stats cleared.
    pub fn reset(&self) {
        let mut st = self.lock();
        st.inst = self.inner.seeded.clone();
        st.settings = self.inner.initial_settings.clone();
        st.faults = Faults::default();
        st.fault_rng = ChaCha8Rng::seed_from_u64(0);
        st.fault_seen = 0;
        st.stats = Stats::default();
        st.window = (0, 0);
    }

    pub fn settings(&self) -> Settings {
        self.lock().settings.clone()
    }

    pub fn set_settings(&self, settings: Settings) {
        self.lock().settings = settings;
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Replaces the faults; the fault dice restart from `faults.seed`.
    pub fn set_faults(&self, faults: Faults) {
        let mut st = self.lock();
        st.fault_rng = ChaCha8Rng::seed_from_u64(faults.seed);
        st.fault_seen = 0;
        st.faults = faults;
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    /// A copy of the instance's data, for tests that compare against it.
    pub fn snapshot(&self) -> Instance {
        self.lock().inst.clone()
    }

    /// Runs `f` with mutable access to the instance (for test set-up from Rust).
    pub fn with_instance<R>(&self, f: impl FnOnce(&mut Instance) -> R) -> R {
        f(&mut self.lock().inst)
    }
}
