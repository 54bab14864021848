"""Gradio's queue, asleep while nobody asks for anything, and keeping fewer records of what it did.

Gradio's queue looks for new events and for progress to report hundreds of times a second on Linux
(`Queue.sleep_when_free`, `progress_update_sleep_when_free`), whether anyone is connected or not: an
app left running between lessons kept part of a core busy for nothing. This queue sleeps until
something changes (an event arrives, a job ends) and otherwise takes the very steps of Gradio's own
loop (gradio 6.31, the release requirements.txt pins), so a request waits no longer than before.
"""
import asyncio
import time

from gradio import queueing, utils

SAFETY_SECONDS = 0.5  # the loop looks anyway this often, in case a change came by a path that does not wake it
# Gradio keeps a record of each event for its monitoring, 10,000 unless told: the last few hundred tell as much, and
# the app's memory stays flat sooner.
EVENTS_RECORDED = 500
# Gradio remembers, per session, the events whose last message it has not delivered (a tab closed early leaves
# some): without a bound, a record per session for as long as the app runs. As many as Gradio keeps their messages.
SESSIONS_REMEMBERED = 2000


class IdleQueue(queueing.Queue):

    @classmethod
    def replacing(cls, queue: queueing.Queue) -> "IdleQueue":
        """An IdleQueue with the settings of `queue` (the one `Blocks.queue()` made), to take its place."""
        idle = cls(live_updates=queue.live_updates, concurrency_count=queue.max_thread_count,
                   update_intervals=queue.update_intervals, max_size=queue.max_size, blocks=queue.blocks,
                   default_concurrency_limit=queue.default_concurrency_limit)
        idle.ANALYTICS_MAX_EVENTS = EVENTS_RECORDED
        return idle

    def start(self):
        # Made here: start() runs in the server's event loop.
        self._changed = asyncio.Event()  # an event arrived, or a job ended: something more may start
        self._started = asyncio.Event()  # a job started: progress may come
        super().start()

    async def push(self, *args, **kwargs):
        pushed = await super().push(*args, **kwargs)
        self._changed.set()
        return pushed

    async def process_events(self, *args, **kwargs):
        try:
            return await super().process_events(*args, **kwargs)
        finally:
            self._changed.set()  # a slot is free, and a concurrency limit has room again
            while len(self.pending_event_ids_session) > SESSIONS_REMEMBERED:  # the oldest sessions first
                self.pending_event_ids_session.pop(next(iter(self.pending_event_ids_session)))

    async def start_processing(self) -> None:
        """Gradio's loop: start every event that may start, then sleep until something changes."""
        try:
            while not self.stopped:
                self._changed.clear()
                while len(self) and None in self.active_jobs and await self._start_next():
                    pass
                await woken(self._changed)
        finally:
            self.stopped = True
            self._cancel_asyncio_tasks()

    async def _start_next(self) -> bool:
        """Start the next batch of events that may run (Gradio's own step); False if none may yet."""
        async with self.delete_lock:
            event_batch = self.get_events()
        if not event_batch:
            return False
        events, batch, concurrency_id = event_batch
        self.active_jobs[self.active_jobs.index(None)] = events
        event_queue = self.event_queue_per_concurrency_id[concurrency_id]
        event_queue.current_concurrency += 1
        start_time = time.time()
        fn = events[0].fn
        event_queue.start_times_per_fn[fn].add(start_time)
        for event in events:
            if (analytics := self.event_analytics.get(event._id)) is not None:
                analytics["status"] = "processing"
        task = utils.run_coro_in_background(self.process_events, events, batch, start_time, fn)
        utils.set_task_name(task, events[0].session_hash, fn._id, events[0]._id, batch)
        self._asyncio_tasks.add(task)
        task.add_done_callback(self._asyncio_tasks.discard)
        if self.live_updates:
            self.broadcast_estimations(concurrency_id)
        self._started.set()
        return True

    async def start_progress_updates(self) -> None:
        """Gradio's progress loop, asleep while no job runs."""
        while not self.stopped:
            events = [event for job in self.active_jobs if job is not None for event in job]
            if not events:
                self._started.clear()
                await woken(self._started)
                continue
            for event in events:
                if event.progress_pending and event.progress:
                    event.progress_pending = False
                    self.send_message(event, event.progress)
            await asyncio.sleep(self.progress_update_sleep_when_free)


async def woken(event: asyncio.Event):
    """Wait until `event` is set, or SAFETY_SECONDS at most."""
    try:
        await asyncio.wait_for(event.wait(), SAFETY_SECONDS)
    except TimeoutError:
        pass
