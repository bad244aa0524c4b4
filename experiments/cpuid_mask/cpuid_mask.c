/* Run a process as if its CPU were an older one: "AVX2-only" (Haswell, Zen 2) or "AVX-512 without VNNI" (Skylake-SP)
 * on an AVX-512 VNNI machine.
 *
 * Build:  gcc -O2 -shared -fPIC -o cpuid_mask.so experiments/cpuid_mask/cpuid_mask.c -ldl
 * Use:    LD_PRELOAD=$PWD/cpuid_mask.so python -m mtfcdd.benchmark ...             (AVX2 only)
 *         CPUID_MASK=avx512 LD_PRELOAD=$PWD/cpuid_mask.so python -m mtfcdd.benchmark ...  (AVX-512 F/CD/BW/DQ/VL only)
 *
 * How: Linux CPUID faulting (arch_prctl ARCH_SET_CPUID; the CPU must list `cpuid_fault` in /proc/cpuinfo). Every
 * CPUID instruction of the process then raises SIGSEGV; the handler below executes the real CPUID with faulting
 * briefly off, clears feature bits and returns that to the instruction: with CPUID_MASK=avx2 (the default) every
 * AVX-512 extension, AVX-VNNI, AMX and GFNI/VAES/VPCLMULQDQ; with CPUID_MASK=avx512 the same except AVX-512 F, CD,
 * BW, DQ and VL (Skylake-SP's set: no VNNI, no BF16). The kernel
 * dispatchers of ONNX Runtime (MLAS), oneDNN, OpenVINO and ATen (cpuinfo) all read CPUID, so they select and run
 * their AVX2 kernels natively on this hardware. /proc/cpuinfo still lists the host's flags. Faulting is set in the
 * loading thread before any other thread exists and threads inherit it, as do forked children (DataLoader
 * workers); an exec'd child starts unmasked. A SIGSEGV handler installed later (PyTorch's DataLoader workers,
 * Python's faulthandler) is kept as the one real faults go to, while this handler stays first.
 * MASK_CPUID_VERBOSE=1 prints one line when active.
 *
 * What it is not: a Haswell or Zen 2. Caches, clock and the 256-bit units are this machine's, so times measure
 * the AVX2 code paths on this core, not an AVX2-only CPU's speed.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

typedef int (*sigaction_function)(int, const struct sigaction *, struct sigaction *);

static struct sigaction previous_handler; /* where real segmentation faults go */
static int installed;
static int keep_avx512_core; /* CPUID_MASK=avx512 */

static sigaction_function real_sigaction(void) {
    static sigaction_function function;
    if (!function) function = (sigaction_function)dlsym(RTLD_NEXT, "sigaction");
    return function;
}

static long set_cpuid_enabled(int enabled) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled); }

static void mask_features(uint32_t leaf, uint32_t subleaf, uint32_t *eax, uint32_t *ebx, uint32_t *ecx,
                          uint32_t *edx) {
    if (leaf == 7 && subleaf == 0) {
        /* AVX512 IFMA, PF, ER; F, DQ, CD, BW, VL unless kept */
        *ebx &= ~(BIT(21) | BIT(26) | BIT(27));
        if (!keep_avx512_core) *ebx &= ~(BIT(16) | BIT(17) | BIT(28) | BIT(30) | BIT(31));
        /* AVX512 VBMI, VBMI2, GFNI, VAES, VPCLMULQDQ, VNNI, BITALG, VPOPCNTDQ */
        *ecx &= ~(BIT(1) | BIT(6) | BIT(8) | BIT(9) | BIT(10) | BIT(11) | BIT(12) | BIT(14));
        /* AVX512 4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, AVX512-FP16, AMX-TILE, AMX-INT8 */
        *edx &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (leaf == 7 && subleaf == 1) {
        /* AVX-VNNI, AVX512-BF16 */
        *eax &= ~(BIT(4) | BIT(5));
    }
}

static void on_sigsegv(int signal_number, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *regs = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)regs[REG_RIP];
    if (info->si_code == SI_KERNEL && ip[0] == 0x0F && ip[1] == 0xA2) { /* a faulted CPUID */
        uint32_t eax, ebx, ecx, edx;
        uint32_t leaf = (uint32_t)regs[REG_RAX], subleaf = (uint32_t)regs[REG_RCX];
        set_cpuid_enabled(1);
        __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(leaf), "c"(subleaf));
        set_cpuid_enabled(0);
        mask_features(leaf, subleaf, &eax, &ebx, &ecx, &edx);
        regs[REG_RAX] = eax;
        regs[REG_RBX] = ebx;
        regs[REG_RCX] = ecx;
        regs[REG_RDX] = edx;
        regs[REG_RIP] += 2;
        return;
    }
    /* a real segmentation fault: whoever handled it before, else the default action on return */
    if (previous_handler.sa_flags & SA_SIGINFO) {
        previous_handler.sa_sigaction(signal_number, info, context);
    } else if (previous_handler.sa_handler != SIG_DFL && previous_handler.sa_handler != SIG_IGN) {
        previous_handler.sa_handler(signal_number);
    } else {
        struct sigaction default_action;
        memset(&default_action, 0, sizeof default_action);
        default_action.sa_handler = SIG_DFL;
        real_sigaction()(SIGSEGV, &default_action, NULL); /* returning re-faults into the default action */
    }
}

/* Others asking for SIGSEGV get recorded as the handler of real faults; the CPUID handler stays installed. */
int sigaction(int signal_number, const struct sigaction *action, struct sigaction *old_action) {
    if (signal_number != SIGSEGV || !installed) return real_sigaction()(signal_number, action, old_action);
    if (old_action) *old_action = previous_handler;
    if (action) previous_handler = *action;
    return 0;
}

sighandler_t signal(int signal_number, sighandler_t handler) {
    struct sigaction action, old_action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(signal_number, &action, &old_action) != 0) return SIG_ERR;
    return old_action.sa_handler;
}

__attribute__((constructor)) static void install(void) {
    const char *level = getenv("CPUID_MASK");
    if (level && *level && strcmp(level, "avx2") != 0 && strcmp(level, "avx512") != 0) {
        fprintf(stderr, "cpuid_mask: CPUID_MASK=%s: expected avx2 or avx512\n", level);
        exit(2);
    }
    keep_avx512_core = level && strcmp(level, "avx512") == 0;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_sigsegv;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    if (real_sigaction()(SIGSEGV, &action, &previous_handler) != 0 || set_cpuid_enabled(0) != 0) {
        fprintf(stderr, "cpuid_mask: CPUID faulting is not available here (no cpuid_fault in /proc/cpuinfo?)\n");
        exit(2);
    }
    installed = 1;
    const char *verbose = getenv("MASK_CPUID_VERBOSE");
    if (verbose && *verbose == '1')
        fprintf(stderr, "cpuid_mask: %s hidden from CPUID in pid %d\n",
                keep_avx512_core ? "AVX-512 VNNI, BF16 and later, AVX-VNNI and AMX" : "AVX-512, AVX-VNNI and AMX",
                (int)getpid());
}
