//! Inclusion and consistency proofs for every small tree, against the
//! recursive definitions, with every byte of every proof flipped.

use osmoda_crdt_state::merkle::{empty_root, leaf_hash, root_of, Frontier};
use osmoda_crdt_state::proof::{
    consistency_path, expanded_consistency_path, implied_old_root, inclusion_path, inclusion_paths,
    verify_consistency, verify_inclusion, ConsistencyProof, InclusionProof, ProofError,
};
use osmoda_crdt_state::Hash;

const N: u64 = 64;

fn leaves(n: u64) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
        .collect()
}

fn roots(leaves: &[Hash]) -> Vec<Hash> {
    // Roots of every prefix, the incremental way, checked against the recursive way.
    let mut f = Frontier::new();
    let mut out = vec![f.root()];
    for l in leaves {
        f.push(*l);
        out.push(f.root());
    }
    for (n, r) in out.iter().enumerate() {
        assert_eq!(*r, root_of(&leaves[..n]), "n={n}");
    }
    out
}

#[test]
fn paths_of_a_range_are_each_leafs_own_path() {
    let all = leaves(40);
    for n in 0..=40u64 {
        let tree = &all[..n as usize];
        for start in 0..=n {
            for end in start..=n {
                let paths = inclusion_paths(start..end, tree).unwrap();
                assert_eq!(paths.len() as u64, end - start);
                for (i, path) in (start..).zip(&paths) {
                    assert_eq!(
                        *path,
                        inclusion_path(i, tree).unwrap(),
                        "n={n} {start}..{end} i={i}"
                    );
                }
            }
        }
        assert!(inclusion_paths(0..n + 1, tree).is_err());
    }
}

#[test]
fn every_inclusion_proof_verifies_and_every_flip_fails() {
    let all = leaves(N);
    let roots = roots(&all);
    for n in 1..=N {
        let tree = &all[..n as usize];
        let root = roots[n as usize];
        for i in 0..n {
            let leaf = tree[i as usize];
            let path = inclusion_path(i, tree).unwrap();
            verify_inclusion(&leaf, i, n, &path, &root).unwrap();
            for h in 0..path.len() {
                for byte in 0..32 {
                    let mut bad = path.clone();
                    bad[h][byte] ^= 0x01;
                    assert!(
                        verify_inclusion(&leaf, i, n, &bad, &root).is_err(),
                        "i={i} n={n} hash {h} byte {byte}"
                    );
                }
            }
            // Wrong leaf, wrong index, short and long paths. (A wrong tree size
            // can pass when it gives the leaf the same path shape: the size is
            // bound by the signed checkpoint, not by the proof.)
            let mut other = leaf;
            other[0] ^= 0x80;
            assert!(verify_inclusion(&other, i, n, &path, &root).is_err());
            if n > 1 {
                let j = (i + 1) % n;
                assert!(verify_inclusion(&leaf, j, n, &path, &root).is_err());
            }
            if !path.is_empty() {
                let short = &path[..path.len() - 1];
                assert!(verify_inclusion(&leaf, i, n, short, &root).is_err());
            }
            let mut long = path.clone();
            long.push([0; 32]);
            assert!(verify_inclusion(&leaf, i, n, &long, &root).is_err());
            // The wire form round-trips exactly.
            let proof = InclusionProof {
                leaf_index: i,
                tree_size: n,
                path,
            };
            let bytes = proof.encode().unwrap();
            assert_eq!(InclusionProof::decode(&bytes).unwrap(), proof);
            proof.verify(&leaf, &root).unwrap();
        }
        assert_eq!(
            inclusion_path(n, tree),
            Err(ProofError::IndexOutOfRange { index: n, size: n })
        );
    }
}

#[test]
fn every_consistency_proof_verifies_and_every_flip_fails() {
    let all = leaves(N);
    let roots = roots(&all);
    for n in 0..=N {
        let tree = &all[..n as usize];
        let new_root = roots[n as usize];
        for m in 0..=n {
            let old_root = roots[m as usize];
            let path = consistency_path(m, tree).unwrap();
            verify_consistency(m, n, &old_root, &new_root, &path).unwrap();
            for h in 0..path.len() {
                for byte in 0..32 {
                    let mut bad = path.clone();
                    bad[h][byte] ^= 0x01;
                    assert!(
                        verify_consistency(m, n, &old_root, &new_root, &bad).is_err(),
                        "m={m} n={n} hash {h} byte {byte}"
                    );
                }
            }
            // Wrong roots, a wrong old size, short and long paths.
            let mut bad_root = old_root;
            bad_root[31] ^= 0x01;
            assert!(verify_consistency(m, n, &bad_root, &new_root, &path).is_err());
            let mut bad_root = new_root;
            bad_root[31] ^= 0x01;
            if m > 0 {
                // From the empty tree every tree is consistent: no new root to check.
                assert!(verify_consistency(m, n, &old_root, &bad_root, &path).is_err());
            }
            if m > 1 {
                assert!(verify_consistency(m - 1, n, &old_root, &new_root, &path).is_err());
            }
            if !path.is_empty() {
                let short = &path[..path.len() - 1];
                assert!(verify_consistency(m, n, &old_root, &new_root, short).is_err());
            }
            let mut long = path.clone();
            long.push([0; 32]);
            assert!(verify_consistency(m, n, &old_root, &new_root, &long).is_err());
            let proof = ConsistencyProof {
                old_size: m,
                new_size: n,
                path,
            };
            let bytes = proof.encode().unwrap();
            assert_eq!(ConsistencyProof::decode(&bytes).unwrap(), proof);
            proof.verify(&old_root, &new_root).unwrap();
        }
        assert!(consistency_path(n + 1, tree).is_err());
    }
}

#[test]
fn expanded_paths_imply_exactly_the_old_root() {
    let all = leaves(N);
    let roots = roots(&all);
    for n in 2..=N {
        let tree = &all[..n as usize];
        for m in 1..n {
            let path = expanded_consistency_path(m, tree).unwrap();
            let implied = implied_old_root(m, n, &path, &roots[n as usize]).unwrap();
            assert_eq!(implied, roots[m as usize], "m={m} n={n}");
            // The expanded path is the RFC path plus, for powers of two, the old root.
            let rfc = consistency_path(m, tree).unwrap();
            let extra = usize::from(m.is_power_of_two());
            assert_eq!(path.len(), rfc.len() + extra);
            assert_eq!(&path[extra..], &rfc[..]);
            for h in 0..path.len() {
                let mut bad = path.clone();
                bad[h][7] ^= 0x20;
                assert!(implied_old_root(m, n, &bad, &roots[n as usize]).is_err());
            }
        }
        assert!(implied_old_root(0, n, &[], &roots[n as usize]).is_err());
        assert!(implied_old_root(n, n, &[roots[n as usize]], &roots[n as usize]).is_err());
    }
}

#[test]
fn a_rewritten_history_implies_a_different_old_root() {
    // The signer's tree of 13 leaves, whose first 5 differ from the tree it
    // signed at size 5: the proof leads to the new root but not to the old.
    let honest = leaves(5);
    let mut rewritten = leaves(13);
    rewritten[2] = leaf_hash(b"rewritten");
    let old_root = root_of(&honest);
    let new_root = root_of(&rewritten);
    let path = expanded_consistency_path(5, &rewritten).unwrap();
    let implied = implied_old_root(5, 13, &path, &new_root).unwrap();
    assert_ne!(implied, old_root);
    assert_eq!(implied, root_of(&rewritten[..5]));
    let rfc = consistency_path(5, &rewritten).unwrap();
    assert_eq!(
        verify_consistency(5, 13, &old_root, &new_root, &rfc),
        Err(ProofError::RootMismatch)
    );
}

#[test]
fn edge_cases_follow_the_rfc() {
    let l = leaves(4);
    let r4 = root_of(&l);
    // Equal sizes: empty path, equal roots.
    verify_consistency(4, 4, &r4, &r4, &[]).unwrap();
    assert!(verify_consistency(4, 4, &r4, &[0; 32], &[]).is_err());
    // From the empty tree: empty path, the empty root.
    verify_consistency(0, 4, &empty_root(), &r4, &[]).unwrap();
    assert!(verify_consistency(0, 4, &[0; 32], &r4, &[]).is_err());
    // Shrinking is never consistent; an empty path between sizes proves nothing.
    assert!(verify_consistency(4, 3, &r4, &r4, &[]).is_err());
    assert!(verify_consistency(2, 4, &root_of(&l[..2]), &r4, &[]).is_err());
    // Inclusion needs an index inside the tree.
    assert!(verify_inclusion(&l[0], 0, 0, &[], &empty_root()).is_err());
    // Oversized and truncated wire forms.
    let proof = InclusionProof {
        leaf_index: 0,
        tree_size: 1,
        path: vec![[1; 32]; 66],
    };
    assert_eq!(proof.encode(), Err(ProofError::WrongLength));
    let bytes = ConsistencyProof {
        old_size: 1,
        new_size: 2,
        path: vec![[1; 32]],
    }
    .encode()
    .unwrap();
    for cut in 0..bytes.len() {
        assert!(ConsistencyProof::decode(&bytes[..cut]).is_err());
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        ConsistencyProof::decode(&longer),
        Err(ProofError::Malformed)
    );
}
