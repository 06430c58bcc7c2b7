//! The dependency graph of a stack's resources (petgraph), cycle reports and DOT output.

use std::collections::HashMap;
use std::fmt::Write as _;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::config::Desired;
use crate::diag::Diag;
use crate::model::Address;

/// Edges point from a dependency to its dependent: walking in topological order creates
/// dependencies first; walking in reverse deletes dependents first.
pub struct Graph {
    /// Node weights are indices into the resource list the graph was built from.
    pub graph: DiGraph<usize, ()>,
    addresses: Vec<Address>,
}

impl Graph {
    /// Builds the graph; a dependency cycle is an error naming the whole cycle path.
    pub fn build(resources: &[Desired]) -> Result<Graph, Diag> {
        let mut graph = DiGraph::with_capacity(resources.len(), resources.len() * 2);
        let mut index: HashMap<&Address, NodeIndex> = HashMap::with_capacity(resources.len());
        for (i, r) in resources.iter().enumerate() {
            index.insert(&r.address, graph.add_node(i));
        }
        for r in resources {
            let to = index[&r.address];
            for d in &r.depends_on {
                if let Some(&from) = index.get(&d.address) {
                    graph.add_edge(from, to, ());
                }
            }
        }
        let g = Graph {
            graph,
            addresses: resources.iter().map(|r| r.address.clone()).collect(),
        };
        if let Some(cycle) = g.find_cycle() {
            return Err(cycle_diag(&cycle, resources));
        }
        Ok(g)
    }

    fn addr(&self, n: NodeIndex) -> &Address {
        &self.addresses[self.graph[n]]
    }

    /// One cycle, as the list of addresses in dependency order (first repeated at the end).
    fn find_cycle(&self) -> Option<Vec<Address>> {
        let scc = tarjan_scc(&self.graph).into_iter().find(|c| c.len() > 1)?;
        let members: std::collections::HashSet<NodeIndex> = scc.iter().copied().collect();
        // Walk inside the component until a node repeats: that closes a cycle.
        let start = *scc.iter().min_by_key(|n| self.addr(**n))?;
        let mut path = vec![start];
        let mut pos: HashMap<NodeIndex, usize> = HashMap::from([(start, 0)]);
        let mut node = start;
        loop {
            let mut next: Vec<NodeIndex> = self
                .graph
                .edges(node)
                .map(|e| e.target())
                .filter(|t| members.contains(t))
                .collect();
            next.sort_by_key(|n| self.addr(*n));
            let n = *next.first()?;
            if let Some(&i) = pos.get(&n) {
                let mut cycle: Vec<Address> =
                    path[i..].iter().map(|n| self.addr(*n).clone()).collect();
                cycle.push(self.addr(n).clone());
                return Some(cycle);
            }
            pos.insert(n, path.len());
            path.push(n);
            node = n;
        }
    }

    /// Sorted, deduplicated edges as (dependency, dependent).
    fn edges(&self) -> Vec<(&Address, &Address)> {
        let mut edges: Vec<(&Address, &Address)> = self
            .graph
            .edge_references()
            .map(|e| (self.addr(e.source()), self.addr(e.target())))
            .collect();
        edges.sort();
        edges.dedup();
        edges
    }

    /// `{"nodes": [...], "edges": [{"from": dependency, "to": dependent}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut nodes: Vec<&Address> = self.addresses.iter().collect();
        nodes.sort();
        let edges: Vec<serde_json::Value> = self
            .edges()
            .into_iter()
            .map(|(from, to)| serde_json::json!({ "from": from, "to": to }))
            .collect();
        serde_json::json!({ "nodes": nodes, "edges": edges })
    }

    /// Graphviz DOT; edges point from a dependency to what depends on it.
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph cairn {\n  rankdir = LR;\n  node [shape = box, fontname = \"monospace\"];\n",
        );
        let mut nodes: Vec<&Address> = self.addresses.iter().collect();
        nodes.sort();
        for a in nodes {
            let _ = writeln!(out, "  \"{a}\";");
        }
        for (from, to) in self.edges() {
            let _ = writeln!(out, "  \"{from}\" -> \"{to}\";");
        }
        out.push_str("}\n");
        out
    }
}

fn cycle_diag(cycle: &[Address], resources: &[Desired]) -> Diag {
    let path: Vec<String> = cycle.iter().map(ToString::to_string).collect();
    // The cycle runs dependency → dependent; the user wrote it as dependent depends_on dependency.
    let mut diag = Diag::error(
        "config::cycle",
        format!("dependency cycle: {}", path.join(" → ")),
    )
    .help("remove one of the depends_on entries on this path");
    // Explicit depends_on entries first: they are what the user can remove.
    let mut edges = Vec::new();
    for pair in cycle.windows(2) {
        let (dep, dependent) = (&pair[0], &pair[1]);
        let Some(r) = resources.iter().find(|r| &r.address == dependent) else {
            continue;
        };
        let explicit = r
            .depends_on
            .iter()
            .find(|d| &d.address == dep)
            .and_then(|d| d.origin.clone());
        let label = format!("{dependent} depends on {dep}");
        edges.push((
            explicit.is_none(),
            explicit.unwrap_or_else(|| r.origin.clone()),
            label,
        ));
    }
    edges.sort_by_key(|e| e.0);
    for (i, (_, loc, label)) in edges.into_iter().enumerate() {
        diag = if i == 0 {
            diag.at(loc, label)
        } else {
            diag.also(loc, label)
        };
    }
    diag
}
