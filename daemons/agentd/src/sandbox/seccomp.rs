//! The syscall filter, compiled to BPF before fork (the child only hands
//! the finished programs to the kernel).
//!
//! Default allow: the agent is an ordinary unprivileged program, and the
//! filter's job is to close the kernel interfaces an unprivileged process
//! can still reach and no agent needs: other processes' memory (ptrace,
//! process_vm_*), the mount and namespace machinery (unprivileged user
//! namespaces would make every "needs root" check moot), kernel modules,
//! kexec, BPF, perf, keyrings, userfaultfd and the like. They fail with
//! EPERM, as if unprivileged, so programs that probe them carry on.

use std::collections::BTreeMap;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use super::SandboxError;

/// The programs to install, in order. Several filters stack: the kernel
/// runs all and takes the strictest answer, which lets each one have its
/// own errno.
#[derive(Debug, Clone)]
pub(crate) struct Programs(Vec<BpfProgram>);

impl Programs {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[sock_filter]> {
        self.0.iter().map(Vec::as_slice)
    }
}

/// Syscalls refused outright.
fn denied() -> Vec<i64> {
    let mut list = vec![
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_open_tree,
        libc::SYS_move_mount,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_userfaultfd,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_syslog,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_open_by_handle_at,
        libc::SYS_chroot,
    ];
    #[cfg(target_arch = "x86_64")]
    list.extend([libc::SYS_iopl, libc::SYS_ioperm]);
    list
}

/// The namespace flags of clone(2): a new namespace is what unshare would
/// give, so clone may not either.
const CLONE_NEW_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];

/// personality(2) values that change nothing: PER_LINUX, and the query.
const PERSONALITY_QUERY: u64 = 0xffff_ffff;

fn target_arch() -> Result<TargetArch, SandboxError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SandboxError::Seccomp(format!("unsupported architecture: {e}")))
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
    arch: TargetArch,
) -> Result<BpfProgram, SandboxError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )
    .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    BpfProgram::try_from(filter).map_err(|e| SandboxError::Seccomp(e.to_string()))
}

fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SandboxError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .map_err(|e| SandboxError::Seccomp(e.to_string()))
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, SandboxError> {
    SeccompRule::new(conditions).map_err(|e| SandboxError::Seccomp(e.to_string()))
}

/// Compiles the filters for this architecture.
pub(crate) fn programs() -> Result<Programs, SandboxError> {
    let arch = target_arch()?;
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> =
        denied().into_iter().map(|nr| (nr, Vec::new())).collect();
    // clone's first argument holds the flags on x86_64 and aarch64 alike;
    // one rule per flag, since a rule's conditions all have to hold.
    let clone_rules = CLONE_NEW_FLAGS
        .iter()
        .map(|&flag| rule(vec![condition(0, SeccompCmpOp::MaskedEq(flag), flag)?]))
        .collect::<Result<Vec<_>, _>>()?;
    eperm.insert(libc::SYS_clone, clone_rules);
    eperm.insert(
        libc::SYS_personality,
        vec![rule(vec![
            condition(0, SeccompCmpOp::Ne, 0)?,
            condition(0, SeccompCmpOp::Ne, PERSONALITY_QUERY)?,
        ])?],
    );
    // clone3 passes its flags in memory, where a filter cannot look: ENOSYS
    // makes glibc and others fall back to clone, which is checked above.
    let enosys: BTreeMap<i64, Vec<SeccompRule>> = [(libc::SYS_clone3, Vec::new())].into();
    let mut programs = vec![
        compile(eperm, libc::EPERM, arch)?,
        compile(enosys, libc::ENOSYS, arch)?,
    ];
    #[cfg(target_arch = "x86_64")]
    programs.push(x32_refusal());
    Ok(Programs(programs))
}

/// On x86_64 the x32 ABI reaches the same kernel entry points under
/// numbers with bit 30 set, which the filters above never name; refuse
/// them all (nothing an agent runs uses x32).
#[cfg(target_arch = "x86_64")]
fn x32_refusal() -> BpfProgram {
    // BPF_LD | BPF_W | BPF_ABS
    const BPF_LD_W_ABS: u16 = 0x20;
    // BPF_JMP | BPF_JGE | BPF_K
    const BPF_JMP_JGE_K: u16 = 0x35;
    // BPF_RET | BPF_K
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let ins = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        // seccomp_data.nr is at offset 0 (the arch check of the other
        // filters already kills foreign architectures).
        ins(BPF_LD_W_ABS, 0, 0, 0),
        ins(BPF_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT),
        ins(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        ins(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_compile_for_this_host() {
        let programs = programs().unwrap();
        assert!(programs.iter().count() >= 2);
        assert!(programs
            .iter()
            .all(|p| !p.is_empty() && p.len() < usize::from(u16::MAX)));
    }
}
