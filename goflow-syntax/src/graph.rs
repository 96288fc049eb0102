//! The order of a DAG's tasks, and the cycle that prevents one.

/// Kahn's algorithm over tasks `0..upstream.len()`, where `upstream[i]`
/// lists the tasks `i` depends on; ties are broken by declaration order
/// (index). On a cycle, returns the tasks of one cycle with the first
/// repeated at the end, starting at the earliest declared task so that
/// messages are stable.
pub fn topological_order(upstream: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = upstream.len();
    let mut downstream = vec![Vec::new(); n];
    for (i, ups) in upstream.iter().enumerate() {
        for &u in ups {
            downstream[u].push(i);
        }
    }
    let mut indegree: Vec<usize> = upstream.iter().map(Vec::len).collect();
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|i| indegree[*i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &downstream[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk upstream edges among the unordered tasks until one repeats.
    let Some(mut at) = (0..n).find(|i| indegree[*i] > 0) else {
        return Err(Vec::new());
    };
    let mut path = Vec::new();
    loop {
        if let Some(pos) = path.iter().position(|p| *p == at) {
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse();
            let first = (0..cycle.len()).min_by_key(|k| cycle[*k]).unwrap_or(0);
            cycle.rotate_left(first);
            cycle.push(cycle[0]);
            return Err(cycle);
        }
        path.push(at);
        match upstream[at].iter().find(|u| indegree[**u] > 0) {
            Some(u) => at = *u,
            None => return Err(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_a_diamond_by_declaration() {
        // 0 -> 1, 0 -> 2, 1 -> 3, 2 -> 3
        let up = vec![vec![], vec![0], vec![0], vec![1, 2]];
        assert_eq!(topological_order(&up), Ok(vec![0, 1, 2, 3]));
    }

    #[test]
    fn finds_a_cycle_from_its_earliest_task() {
        // a -> b -> c -> a, d after a.
        let up = vec![vec![2], vec![0], vec![1], vec![0]];
        assert_eq!(topological_order(&up), Err(vec![0, 1, 2, 0]));
        assert_eq!(topological_order(&[vec![0]]), Err(vec![0, 0]));
    }
}
