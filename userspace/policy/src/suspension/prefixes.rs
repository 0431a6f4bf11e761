//! Which prefixes of a set overlap a given one. Two CIDR prefixes overlap exactly when
//! one contains the other, so an overlap is either a wider (or equal) entry, found by
//! one hash lookup per prefix length in use, or a narrower one, found by a range of the
//! entries sorted by network address. Policy checks run this for every tenant address
//! against the suspended ones, so it must not be quadratic at 100,000 tenants.

use std::collections::{BTreeSet, HashMap};

use ipnet::IpNet;

/// A set of prefixes, each with a value (e.g. the tenant owning it).
#[derive(Debug, Clone)]
pub struct PrefixIndex<T> {
    exact: HashMap<IpNet, Vec<T>>,
    sorted: Vec<(IpNet, T)>,
    lens_v4: BTreeSet<u8>,
    lens_v6: BTreeSet<u8>,
}

impl<T> Default for PrefixIndex<T> {
    fn default() -> Self {
        PrefixIndex {
            exact: HashMap::new(),
            sorted: Vec::new(),
            lens_v4: BTreeSet::new(),
            lens_v6: BTreeSet::new(),
        }
    }
}

fn truncated(net: &IpNet, len: u8) -> IpNet {
    IpNet::new(net.addr(), len)
        .map(|n| n.trunc())
        .unwrap_or(*net)
}

impl<T: Clone> PrefixIndex<T> {
    /// The index of `items` (prefixes are taken with their host bits cleared).
    pub fn new(items: impl IntoIterator<Item = (IpNet, T)>) -> Self {
        let mut ix = PrefixIndex::default();
        for (net, value) in items {
            let net = net.trunc();
            match net {
                IpNet::V4(_) => ix.lens_v4.insert(net.prefix_len()),
                IpNet::V6(_) => ix.lens_v6.insert(net.prefix_len()),
            };
            ix.exact.entry(net).or_default().push(value.clone());
            ix.sorted.push((net, value));
        }
        ix.sorted.sort_by_key(|(n, _)| *n);
        ix
    }

    /// True when the index holds nothing.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Entries equal to or wider than `net`.
    pub fn containing(&self, net: &IpNet) -> Vec<(IpNet, &T)> {
        let net = net.trunc();
        let lens = match net {
            IpNet::V4(_) => &self.lens_v4,
            IpNet::V6(_) => &self.lens_v6,
        };
        let mut out = Vec::new();
        for &len in lens.range(..=net.prefix_len()) {
            let wider = truncated(&net, len);
            if let Some(values) = self.exact.get(&wider) {
                out.extend(values.iter().map(|v| (wider, v)));
            }
        }
        out
    }

    /// Entries strictly narrower than `net` and inside it.
    pub fn inside(&self, net: &IpNet) -> Vec<(IpNet, &T)> {
        let net = net.trunc();
        let start = self.sorted.partition_point(|(n, _)| *n <= net);
        self.sorted[start..]
            .iter()
            .take_while(|(n, _)| net.contains(&n.network()))
            .filter(|(n, _)| n.prefix_len() > net.prefix_len() && net.contains(n))
            .map(|(n, v)| (*n, v))
            .collect()
    }

    /// Every entry overlapping `net` (containing it, equal to it, or inside it).
    pub fn overlapping(&self, net: &IpNet) -> Vec<(IpNet, &T)> {
        let mut out = self.containing(net);
        out.extend(self.inside(net));
        out
    }

    /// True when some entry contains (or equals) `net`.
    pub fn covers(&self, net: &IpNet) -> bool {
        !self.containing(net).is_empty()
    }
}
