//! Cloud Hypervisor's event monitor (`--event-monitor path=<fifo>`): a stream of pretty-printed
//! JSON objects `{timestamp, source, event, properties}` separated by blank lines. CH reboots
//! the VM in place when the guest resets (our guests reset on panic), so the shim watches
//! this stream and stops CH at once: a pod's VM never silently comes back as a fresh guest.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::child::Child;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Event {
    pub source: String,
    pub event: String,
}

impl Event {
    /// Why this event means the VM is dead, if it does. A guest power-off is not here: CH
    /// exits by itself then, and the process exit is the signal.
    pub fn fatal(&self) -> Option<&'static str> {
        match (self.source.as_str(), self.event.as_str()) {
            ("vm", "rebooting" | "rebooted") => Some("the guest rebooted (kernel panic or reset)"),
            ("guest", "panic") => Some("the guest kernel panicked"),
            _ => None,
        }
    }
}

/// Splits CH's event stream into events as bytes arrive.
#[derive(Default)]
pub struct EventParser {
    buf: Vec<u8>,
}

impl EventParser {
    /// Adds bytes; returns the events they completed. Bytes that are not JSON are skipped
    /// up to the next object so one bad record cannot stall the monitor.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        loop {
            let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Event>();
            let mut consumed = 0;
            let mut skipped = false;
            loop {
                match stream.next() {
                    Some(Ok(event)) => {
                        consumed = stream.byte_offset();
                        events.push(event);
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => {
                        tracing::warn!(
                            "cloud-hypervisor event monitor: skipping a bad record: {e}"
                        );
                        let from = consumed + 1;
                        consumed = self.buf[from.min(self.buf.len())..]
                            .iter()
                            .position(|b| *b == b'{')
                            .map_or(self.buf.len(), |p| from + p);
                        skipped = true;
                        break;
                    }
                    None => {
                        consumed = self.buf.len();
                        break;
                    }
                }
            }
            self.buf.drain(..consumed);
            if !skipped {
                return events;
            }
        }
    }
}

/// Creates the FIFO CH writes its events into.
pub fn make_fifo(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("remove {}", path.display()), e)),
    }
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| Error::io(format!("mkfifo {}", path.display()), e.into()))
}

/// Our reading end of the event FIFO, opened before CH starts so that CH's open for
/// writing does not block.
pub struct EventStream {
    receiver: tokio::net::unix::pipe::Receiver,
}

impl EventStream {
    pub fn open(fifo: &Path) -> Result<Self> {
        let receiver = tokio::net::unix::pipe::OpenOptions::new()
            .open_receiver(fifo)
            .map_err(|e| Error::io(format!("open {}", fifo.display()), e))?;
        Ok(Self { receiver })
    }

    /// Reads CH's events until it closes the stream. On a fatal event it notes the reason in
    /// CH's log (so the exit error carries it) and kills CH, which every waiter notices.
    pub fn watch(mut self, ch: Arc<Child>, ch_log: PathBuf) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut parser = EventParser::default();
            let mut chunk = [0u8; 4096];
            loop {
                let n = match self.receiver.read(&mut chunk).await {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!("cloud-hypervisor event monitor: {e}");
                        return;
                    }
                };
                for event in parser.push(&chunk[..n]) {
                    tracing::debug!(source = %event.source, event = %event.event, "cloud-hypervisor event");
                    if let Some(why) = event.fatal() {
                        tracing::warn!(pid = ch.pid(), "{why}; stopping cloud-hypervisor");
                        note(&ch_log, why);
                        ch.kill().await;
                        return;
                    }
                }
            }
        })
    }
}

fn note(log: &Path, why: &str) {
    let written = std::fs::OpenOptions::new()
        .append(true)
        .open(log)
        .and_then(|mut f| writeln!(f, "hyper-shim: {why}; cloud-hypervisor stopped"));
    if let Err(e) = written {
        tracing::warn!("note in {}: {e}", log.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What CH writes: `serde_json::to_string_pretty` of each event, then a blank line.
    const STREAM: &str = "{\n  \"timestamp\": {\n    \"secs\": 0,\n    \"nanos\": 91\n  },\n  \"source\": \"vmm\",\n  \"event\": \"starting\",\n  \"properties\": null\n}\n\n{\n  \"timestamp\": {\n    \"secs\": 1,\n    \"nanos\": 5\n  },\n  \"source\": \"vm\",\n  \"event\": \"booted\",\n  \"properties\": null\n}\n\n{\n  \"timestamp\": {\n    \"secs\": 2,\n    \"nanos\": 0\n  },\n  \"source\": \"vm\",\n  \"event\": \"rebooting\",\n  \"properties\": null\n}\n\n";

    fn names(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| format!("{}/{}", e.source, e.event))
            .collect()
    }

    #[test]
    fn events_split_at_any_byte_come_out_whole() {
        for split in 0..STREAM.len() {
            let mut p = EventParser::default();
            let mut events = p.push(&STREAM.as_bytes()[..split]);
            events.extend(p.push(&STREAM.as_bytes()[split..]));
            assert_eq!(
                names(&events),
                ["vmm/starting", "vm/booted", "vm/rebooting"],
                "split at {split}"
            );
        }
    }

    #[test]
    fn a_bad_record_is_skipped() {
        let mut p = EventParser::default();
        let events = p.push(b"garbage\n{\"source\":\"vm\",\"event\":\"booting\"}\n");
        assert_eq!(names(&events), ["vm/booting"]);
    }

    #[test]
    fn reboots_and_panics_are_fatal_power_off_is_not() {
        let e = |source: &str, event: &str| Event {
            source: source.into(),
            event: event.into(),
        };
        assert!(e("vm", "rebooting").fatal().is_some());
        assert!(e("guest", "panic").fatal().is_some());
        assert!(e("vm", "shutdown").fatal().is_none());
        assert!(e("vm", "booted").fatal().is_none());
        assert!(e("virtio-device", "reset").fatal().is_none());
    }

    /// The watch kills the process on a fatal event and says why in its log.
    #[tokio::test]
    async fn a_reboot_event_kills_the_vmm() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("events.fifo");
        make_fifo(&fifo).unwrap();
        let log = dir.path().join("sleep.log");
        let child = Arc::new(
            Child::spawn("sleep", Path::new("/bin/sleep"), &["100".into()], &log).unwrap(),
        );
        let task = EventStream::open(&fifo)
            .unwrap()
            .watch(child.clone(), log.clone());
        // The writer side, as CH opens it.
        let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        w.write_all(STREAM.as_bytes()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        assert!(child.exit_status().is_some());
        let e = child.exited_error().to_string();
        assert!(
            e.contains("the guest rebooted (kernel panic or reset); cloud-hypervisor stopped"),
            "{e}"
        );
    }
}
