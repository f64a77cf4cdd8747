//! Everything about the gateway as a program on this machine: where it is installed
//! ([`install`]), the JVM command line that starts it ([`launch`]), whether the machine has
//! the memory for it ([`memory`]), and the process from spawn to exit ([`process`]). These are adapters: they find, start, watch and stop; the
//! core decides when.

pub mod install;
pub mod launch;
pub mod memory;
pub mod process;

pub use install::{discover, Install, InstallError, InstallQuery, JavaSource, Program};
pub use launch::{
    build_command, find_autorestart_token, read_inputs, AutorestartScan, JvmCommand, LaunchError,
    LaunchInputs, LaunchParams,
};
pub use process::{
    become_subreaper, classify_exit, find_adoptable, find_hs_err, is_our_jvm, read_pidfile,
    reap_group_orphans, remove_pidfile, spawn, terminate, terminate_pidfd, write_pidfile, ExitKind,
    GatewayProcess, JvmIdentity, PidFd, ProcessError, SpawnOptions, Termination,
};
