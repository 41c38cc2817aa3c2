//! The fuzzer finds a PLANTED interpreter bug (a test-only wrapper that inverts CF after every
//! `neg`) and the minimiser reduces the program to a few instructions; campaigns are
//! deterministic for any number of jobs. No KVM needed: the reference is the interpreter.
mod diff_common;

use diff_common::{temp_dir, PlantedBug};
use picoqemu::diff::wholerun::Side;
use picoqemu::diff::DiffError;
use picoqemu::fuzz::harness::{Verdict, Worker};
use picoqemu::fuzz::program::FUZZ_MEM;
use picoqemu::fuzz::{campaign, gen, minimize, rng, FuzzArgs, Outcome};
use picoqemu_core::{IoBus, Machine, MachineConfig};
use picoqemu_interp::InterpBackend;

fn machine() -> Machine {
    Machine::new(
        MachineConfig { mem_size: FUZZ_MEM, a20_wrap: false, ..MachineConfig::default() },
        IoBus::capturing(),
    )
    .unwrap()
}

fn planted_worker(lockstep: bool) -> Result<Worker<InterpBackend, PlantedBug>, DiffError> {
    Ok(Worker::new(
        Side::new(InterpBackend::new(), machine()),
        Side::new(PlantedBug::new(), machine()),
        lockstep,
    ))
}

fn clean_worker() -> Result<Worker<InterpBackend, InterpBackend>, DiffError> {
    Ok(Worker::new(
        Side::new(InterpBackend::new(), machine()),
        Side::new(InterpBackend::new(), machine()),
        false,
    ))
}

#[test]
fn planted_bug_is_found_and_minimised_to_a_few_instructions() {
    for lockstep in [false, true] {
        let mut w = planted_worker(lockstep).unwrap();
        let mut found = None;
        for k in 0..300 {
            let p = gen::generate(rng::program_seed(7, k));
            if let Verdict::Divergent(f) = w.run_program(&p).unwrap() {
                found = Some((p, f));
                break;
            }
        }
        let (program, finding) = found.expect("the planted bug is found within 300 programs");
        assert!(finding.report.contains("DIVERGENT"), "{}", finding.report);
        let m = minimize::minimise(&mut w, &program, &finding).unwrap();
        let mnemonics: Vec<_> =
            m.program.units.iter().flat_map(|u| u.insns.iter().map(|i| i.instr.mnemonic())).collect();
        assert!(
            mnemonics.contains(&iced_x86::Mnemonic::Neg),
            "minimised program lost the neg: {mnemonics:?}"
        );
        assert!(
            m.program.insn_count() <= 4,
            "minimised from {} to {} instructions: {mnemonics:?}",
            program.insn_count(),
            m.program.insn_count()
        );
        assert!(m.program.insn_count() < program.insn_count());
        assert!(
            m.finding.signature.iter().any(|s| s == "eflags" || s == "memory"),
            "{:?}",
            m.finding.signature
        );
        if lockstep {
            assert!(m.finding.report.contains("neg"), "{}", m.finding.report);
        }
    }
}

#[test]
fn identical_backends_are_the_same_on_every_program() {
    let mut w = clean_worker().unwrap();
    for k in 0..60 {
        let p = gen::generate(rng::program_seed(3, k));
        match w.run_program(&p).unwrap() {
            Verdict::Same => {}
            other => panic!("program {k}: interp vs interp gave {other:?}"),
        }
    }
}

#[test]
fn campaigns_are_deterministic_for_any_job_count() {
    let out = temp_dir("fuzz-determinism");
    let run = |jobs| {
        let args = FuzzArgs {
            seed: 11,
            count: 40,
            jobs: Some(jobs),
            out: out.clone(),
            lockstep: false,
            jit: picoqemu::cli::JitChoice::Hot,
        };
        campaign(&args, || planted_worker(false), &|_| {}).unwrap()
    };
    let one = run(1);
    let three = run(3);
    assert_eq!(one.len(), 40);
    assert_eq!(one, three);
    assert!(one.iter().any(|o| matches!(o, Outcome::Divergent { .. })), "{one:?}");
    // Reproducer files exist and hold a replay command.
    for o in &one {
        if let Outcome::Divergent { repro: Ok(dir), .. } = o {
            let readme = std::fs::read_to_string(dir.join("README.txt")).unwrap();
            assert!(readme.contains("picoqemu diff --raw --mem 1088K"), "{readme}");
            assert!(dir.join("program.bin").exists() && dir.join("program.asm").exists());
            assert!(dir.join("kvm.txt").exists() && dir.join("interp.txt").exists());
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn program_k_of_seed_s_is_always_the_same_bytes() {
    for k in [0u64, 1, 99, 12345] {
        let a = gen::generate(rng::program_seed(42, k)).assemble().unwrap().image;
        let b = gen::generate(rng::program_seed(42, k)).assemble().unwrap().image;
        assert_eq!(a, b);
    }
    let a = gen::generate(rng::program_seed(42, 0)).assemble().unwrap().image;
    let c = gen::generate(rng::program_seed(43, 0)).assemble().unwrap().image;
    assert_ne!(a, c);
}
