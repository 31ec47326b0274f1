//! "Did you mean …": the nearest known word to a misspelt field or kind.

/// Kinds weir models.
pub const KINDS: &[&str] = &[
    "Namespace",
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
    "Service",
    "Ingress",
    "HTTPRoute",
    "ReferenceGrant",
    "NetworkPolicy",
    "ClusterNetworkPolicy",
    "AdminNetworkPolicy",
    "BaselineAdminNetworkPolicy",
    "Node",
    "List",
];

/// Field names of the objects weir reads (any level): an unknown field is compared with
/// these. A suggestion is a hint, so one list serves every level.
pub const FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "labels",
    "annotations",
    "ownerReferences",
    "uid",
    "spec",
    "status",
    "podIP",
    "podIPs",
    "ip",
    "hostNetwork",
    "containers",
    "initContainers",
    "ports",
    "containerPort",
    "protocol",
    "template",
    "selector",
    "replicas",
    "jobTemplate",
    "schedule",
    "podSelector",
    "namespaceSelector",
    "policyTypes",
    "ingress",
    "egress",
    "from",
    "to",
    "ipBlock",
    "cidr",
    "except",
    "port",
    "endPort",
    "targetPort",
    "nodePort",
    "type",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "items",
    "nodeName",
    "image",
    "clusterIP",
    "clusterIPs",
    "tier",
    "priority",
    "subject",
    "namespaces",
    "pods",
    "nodes",
    "networks",
    "domainNames",
    "action",
    "protocols",
    "tcp",
    "udp",
    "sctp",
    "destinationPort",
    "destinationNamedPort",
    "number",
    "range",
    "start",
    "end",
    "portNumber",
    "namedPort",
    "portRange",
    "addresses",
    "address",
    "parentRefs",
    "hostnames",
    "rules",
    "matches",
    "filters",
    "backendRefs",
    "weight",
    "group",
    "sectionName",
];

/// The one known word within two edits of `word` (ignoring case), if exactly one is
/// nearest; never `word` itself.
pub fn nearest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    let mut tie = false;
    for &k in known {
        if k == word {
            return None;
        }
        let d = distance(&lower, &k.to_lowercase());
        let limit = if word.chars().count() <= 3 { 1 } else { 2 };
        if d > limit {
            continue;
        }
        match best {
            Some((b, _)) if d > b => {}
            Some((b, _)) if d == b => tie = true,
            _ => {
                best = Some((d, k));
                tie = false;
            }
        }
    }
    best.filter(|_| !tie).map(|(_, k)| k)
}

/// Edit distance (insertions, deletions, substitutions, adjacent swaps) between two words.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspellings_find_their_word_and_strangers_nothing() {
        assert_eq!(nearest("staus", FIELDS), Some("status"));
        assert_eq!(nearest("podSelecter", FIELDS), Some("podSelector"));
        assert_eq!(nearest("Pdo", KINDS), Some("Pod"));
        assert_eq!(nearest("networkpolicy", KINDS), Some("NetworkPolicy"));
        assert_eq!(nearest("ConfigMap", KINDS), None);
        assert_eq!(
            nearest("spec", FIELDS),
            None,
            "a known word is not misspelt"
        );
        assert_eq!(nearest("zzzzzz", FIELDS), None);
    }
}
