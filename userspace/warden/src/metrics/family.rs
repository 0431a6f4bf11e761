//! One metric family in the `prometheus` crate's data model, written by its
//! `TextEncoder` (text format 0.0.4: escaping, `# HELP`/`# TYPE`, sample lines).
//!
//! The figures are read from the kernel and the daemon at scrape time (a [`super::Snapshot`]),
//! so each family is built from them when `/metrics` is asked for, the way a custom
//! `prometheus::core::Collector` builds its families in `collect()`: no registry of
//! pre-registered series per tenant to keep in step with the policy. Families are
//! encoded one at a time, so a scrape holds one family's samples in the crate's model
//! at once, not all of them. The per-tenant families are not built here: measured too
//! slow at 10,000 tenants ([`super::tenants`]).

use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use prometheus::TextEncoder;

/// A family being filled, then appended to the exposition with [`Family::write`].
pub(crate) struct Family {
    mf: MetricFamily,
}

impl Family {
    fn new(name: &str, help: &str, kind: MetricType) -> Family {
        let mut mf = MetricFamily::default();
        mf.set_name(name.to_owned());
        mf.set_help(help.to_owned());
        mf.set_field_type(kind);
        Family { mf }
    }

    /// A counter family.
    pub(crate) fn counter(name: &str, help: &str) -> Family {
        Family::new(name, help, MetricType::COUNTER)
    }

    /// A gauge family.
    pub(crate) fn gauge(name: &str, help: &str) -> Family {
        Family::new(name, help, MetricType::GAUGE)
    }

    /// A counter or gauge family of its kind (`"counter"` or `"gauge"`).
    pub(crate) fn of_kind(kind: &str, name: &str, help: &str) -> Family {
        match kind {
            "counter" => Family::counter(name, help),
            _ => Family::gauge(name, help),
        }
    }

    /// Adds one sample with `labels` (written in this order). Integer counts are
    /// exported as the format's float values: exact up to 2^53, which is also what
    /// Prometheus keeps of them.
    pub(crate) fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Family {
        let mut m = proto::Metric::default();
        m.set_label(
            labels
                .iter()
                .map(|(name, value)| {
                    let mut l = LabelPair::default();
                    l.set_name((*name).to_owned());
                    l.set_value((*value).to_owned());
                    l
                })
                .collect(),
        );
        if self.mf.get_field_type() == MetricType::COUNTER {
            let mut c = proto::Counter::default();
            c.set_value(value);
            m.set_counter(c);
        } else {
            let mut g = proto::Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        self.mf.mut_metric().push(m);
        self
    }

    /// Adds one sample of an integer count (see [`Family::sample`]).
    pub(crate) fn count(&mut self, labels: &[(&str, &str)], n: u64) -> &mut Family {
        self.sample(labels, n as f64)
    }

    /// Appends the family to `out`. A family without a sample is left out: the text
    /// format has nothing to say of it, and the crate's encoder refuses it.
    pub(crate) fn write(&self, out: &mut String) {
        write_families(out, std::slice::from_ref(&self.mf));
    }
}

/// Appends families in the `prometheus` crate's model (a family without samples is left
/// out, as [`Family::write`] does).
pub(crate) fn write_families(out: &mut String, families: &[MetricFamily]) {
    for mf in families.iter().filter(|mf| !mf.get_metric().is_empty()) {
        TextEncoder::new()
            .encode_utf8(std::slice::from_ref(mf), out)
            .expect("a named family with samples encodes into a String");
    }
}
