//! A future polled only when it may have progressed: its own waker fired since it last said
//! `Pending`.
//!
//! A `select!` polls every branch each time the task wakes, whichever branch the wake-up was
//! for. A rooms session is woken once per delivery by its queue; polling its socket's read,
//! its ping interval and the shutdown token again each time cost about a fifth of the
//! session's instructions per delivery (callgrind, 100 rooms of 10). Each gated branch is
//! polled with a waker of its own, which notes that it fired and wakes the task; a branch whose
//! waker has not fired is `Pending` without being polled. The same idea as the per-future
//! wakers of `FuturesUnordered`.
//!
//! The one rule for the caller: a gated future polled elsewhere with another waker (e.g. read
//! with `now_or_never`) must be [`Gate::open`]ed, so its next poll registers the gate's waker
//! again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// What a gate's waker does: note the wake-up, then wake the task.
#[derive(Debug)]
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Gate {
    flag: Arc<Flag>,
    waker: Waker,
}

impl Gate {
    /// A gate whose first poll goes through.
    pub(crate) fn new() -> Gate {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(Arc::clone(&flag));
        Gate { flag, waker }
    }

    /// The next poll goes through (the future was polled with another waker meanwhile).
    pub(crate) fn open(&self) {
        self.flag.woken.store(true, Ordering::Release);
    }

    /// Polls through `poll` if the gate's waker fired since the last `Pending` (or the gate
    /// was opened); otherwise `Pending`, and the task is woken when it fires.
    pub(crate) fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        // The task's waker first, then the flag: a wake-up between the two is not lost.
        self.flag.task.register(cx.waker());
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        match poll(&mut Context::from_waker(&self.waker)) {
            Poll::Ready(value) => {
                // Ready once may be ready again (more messages buffered): poll next time.
                self.open();
                Poll::Ready(value)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// Counts its polls; ready once `ready` is set, waking whoever polled it last when set.
    #[derive(Default)]
    struct Probe {
        polls: AtomicUsize,
        ready: AtomicBool,
        waker: AtomicWaker,
    }

    impl Probe {
        fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            self.waker.register(cx.waker());
            if self.ready.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }

        fn set_ready(&self) {
            self.ready.store(true, Ordering::Release);
            self.waker.wake();
        }
    }

    #[test]
    fn a_pending_future_is_not_polled_again_until_its_waker_fires() {
        let (gate, probe) = (Gate::new(), Probe::default());
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..100 {
            assert!(gate.poll(&mut cx, |cx| probe.poll(cx)).is_pending());
        }
        assert_eq!(
            probe.polls.load(Ordering::Relaxed),
            1,
            "polled once, then gated"
        );
        probe.set_ready();
        assert!(gate.poll(&mut cx, |cx| probe.poll(cx)).is_ready());
        assert_eq!(probe.polls.load(Ordering::Relaxed), 2);
        // Ready: the next poll goes through.
        assert!(gate.poll(&mut cx, |cx| probe.poll(cx)).is_ready());
        assert_eq!(probe.polls.load(Ordering::Relaxed), 3);
        // Opened after a poll elsewhere: goes through once more.
        probe.ready.store(false, Ordering::Release);
        assert!(gate.poll(&mut cx, |cx| probe.poll(cx)).is_pending());
        gate.open();
        assert!(gate.poll(&mut cx, |cx| probe.poll(cx)).is_pending());
        assert!(gate.poll(&mut cx, |cx| probe.poll(cx)).is_pending());
        assert_eq!(probe.polls.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn a_wake_up_from_another_thread_reaches_the_gated_task() {
        // 1,000 wake-ups from another thread, each set just before it: none is lost.
        let probe = Arc::new(Probe::default());
        let gate = Gate::new();
        for round in 0..1_000 {
            probe.ready.store(false, Ordering::Release);
            let setter = {
                let probe = Arc::clone(&probe);
                std::thread::spawn(move || probe.set_ready())
            };
            let waited = pin!(std::future::poll_fn(|cx| gate.poll(cx, |cx| probe.poll(cx))));
            tokio::time::timeout(Duration::from_secs(5), waited)
                .await
                .unwrap_or_else(|_| panic!("round {round}: the wake-up was lost"));
            setter.join().expect("setter");
        }
    }
}
