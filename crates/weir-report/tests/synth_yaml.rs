//! Synthesised policies as manifests: what weir writes, weir reads back as the same policy
//! (selectors, namespaces, ipBlocks, named and numbered ports, types, mode), and names in
//! them cannot leave their scalar or comment.

use weir_engine::synth::{synthesise, Observed, SynthOptions};
use weir_engine::{Engine, Side};
use weir_model::{Mode, PortKey, Protocol};
use weir_report::synth::{file_name, policy_yaml};

fn seed() -> weir_model::Cluster {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/todos");
    let mut c = weir_manifest::load_paths(&[root], Default::default())
        .unwrap()
        .cluster;
    c.policies.clear();
    c
}

#[test]
fn written_policies_read_back_as_themselves() {
    let cluster = seed();
    let engine = Engine::new(&cluster);
    let side = |id: &str| engine.resolve(id).unwrap();
    let flows = vec![
        Observed {
            src: side("production/todos"),
            dst: side("production/redis"),
            port: PortKey::new(Protocol::Tcp, 6379),
        },
        Observed {
            src: side("personal/ubuntu"),
            dst: side("production/todos"),
            port: PortKey::new(Protocol::Tcp, 80),
        },
        Observed {
            src: Side::Address("192.0.2.7".parse().unwrap()),
            dst: side("production/todos"),
            port: PortKey::new(Protocol::Tcp, 80),
        },
        Observed {
            src: side("production/todos"),
            dst: Side::Address("198.51.100.1".parse().unwrap()),
            port: PortKey::new(Protocol::Udp, 5353),
        },
    ];
    for (egress, mode) in [(false, Mode::Enforce), (true, Mode::Audit)] {
        let synthesis = synthesise(&engine, &flows, SynthOptions { egress, mode });
        assert!(synthesis.policies.len() >= 4);
        for s in &synthesis.policies {
            let text = policy_yaml(s);
            let loaded = weir_manifest::load_str(&file_name(&s.policy), &text, Default::default())
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            let mut back = loaded
                .cluster
                .policies
                .into_iter()
                .next()
                .expect("one policy");
            // Where it was read from is all that may differ.
            back.origin = s.policy.origin.clone();
            for r in back.ingress.iter_mut().chain(back.egress.iter_mut()) {
                r.origin = Default::default();
            }
            assert_eq!(back, s.policy, "{text}");
            assert!(text.starts_with("# Synthesised by weir synth: "), "{text}");
        }
    }
}

#[test]
fn hostile_names_stay_in_their_scalars_and_comments() {
    let mut cluster = seed();
    // The model takes what the loader validated; synthesis must not rely on it.
    let todos = cluster.endpoint_index("production/todos").unwrap();
    let e = &mut cluster.endpoints[todos];
    e.name = "x\nkind: Secret #".into();
    e.labels.insert("app".into(), "\"}\n- evil: [".into());
    let engine = Engine::new(&cluster);
    let flows = vec![Observed {
        src: engine.resolve("personal/ubuntu").unwrap(),
        dst: Side::Endpoint(todos),
        port: PortKey::new(Protocol::Tcp, 80),
    }];
    let synthesis = synthesise(&engine, &flows, SynthOptions::default());
    for s in &synthesis.policies {
        let text = policy_yaml(s);
        assert!(!text.contains("\nkind: Secret"), "{text}");
        assert!(!text.contains("\n- evil"), "{text}");
        assert!(
            s.policy
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c)),
            "{}",
            s.policy.name
        );
        let name = file_name(&s.policy);
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
                && !name.starts_with('.'),
            "{name}"
        );
    }
}
