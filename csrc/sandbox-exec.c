/*
 * sandbox-exec: the payload's confinement, compiled (issue 10).
 *
 * Reads a serialized plan (the `sandbox.runtime.wire` format, written by
 * the Python supervisor from `LaunchPlan.steps`) from a file descriptor and
 * performs its steps in the plan's order, then execve. Modelled on CPython's
 * _posixsubprocess and bubblewrap: no allocation after parsing but the
 * Landlock directory walk, no library beyond libc, every failure named by
 * its step.
 *
 * Usage:
 *   sandbox-exec --plan-fd N [--error-fd N] [--sync RESUME_FD] [--trace FD]
 *                [--test-pause-ms MS]
 *   sandbox-exec --check [--plan-fd N] [--trace FD]
 *                parse only (default fd 0); with --trace, the dry run: the
 *                steps it would perform, one line each, performing none
 *
 * Wire format (all integers little-endian):
 *   header  "SBXE" u16 wire_version(=1) u16 reserved(=0) u32 nsteps
 *   step    u16 opcode u16 reserved(=0) u32 length, then `length` bytes of
 *           fields; a field is u8 type ('u': u64 | 's': u32 len + bytes,
 *           no NUL | 'b': u32 len + bytes). Each opcode has a fixed field
 *           signature, checked in full before any step runs; an unknown
 *           opcode is refused (an old executor never skips a new protection).
 *
 * Steps, in the only order the plan builder emits them (checked here too:
 * opcodes must not go backwards, execve is last and present):
 *   1 setsid   2 chdir(s)   3 capabilities(u keep-mask)
 *   4 ids(u uid, u gid, u setgroups)   5 no_new_privs
 *   6 landlock(u abi, u handled, u scoped, u file_rights, u nrules,
 *              nrules x (s path, u mask, u common, u nexcl, nexcl x s))
 *   7 exec_label(s)   8 seccomp(b bpf)   9 execve(u argc, argc x s,
 *              u envc, envc x s)
 * and, for `enter`, before all of them (ranked first, see op_rank):
 *   10 setns(u n, n x (u fd, u nstype))   11 chroot(u fd)   12 fork
 *   (the parent forwards INT/TERM/HUP/QUIT, waits and exits with the
 *   child's status, 128+N after signal N; the child goes on)
 * and, for the OCI runtime (sandbox.oci), ranked among them (see op_rank):
 *   13 controlling_tty (TIOCSCTTY on fd 0, after setsid)   14 umask(u)
 *      (before chdir)   15 seccomp_early(b bpf) (after chdir, before the
 *      capability steps: without no_new_privs loading needs CAP_SYS_ADMIN;
 *      never with seccomp)   16 capability_sets(u bounding, u effective,
 *      u permitted, u inheritable, u ambient) (instead of capabilities; the
 *      ids step then sets them exactly)   17 groups(u n, n x u gid) (just
 *      before ids, which then keeps them)
 *
 * Errors: one JSON line {"step", "errno", "message", "status"} on the error
 * fd (the form `runtime.child` writes), then exit 125; execve: 127 when the
 * command is missing, 126 when it cannot be executed. --check: a plain line
 * on stderr and exit 1 for a malformed plan, 2 for a usage error.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <signal.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#define WIRE_VERSION 1
#define MAX_PLAN (16u << 20)
#define MAX_STEPS 4096
#define MAX_RULES 4096
#define MAX_ARGS 65536
#define MAX_BPF_INSNS 4096
#define MAX_GROUPS 65536

enum { OP_SETSID = 1, OP_CHDIR, OP_CAPS, OP_IDS, OP_NNP, OP_LANDLOCK, OP_EXEC_LABEL,
       OP_SECCOMP, OP_EXECVE, OP_SETNS, OP_CHROOT, OP_FORK, OP_CTTY, OP_UMASK,
       OP_SECCOMP_EARLY, OP_CAPSETS, OP_GROUPS, OP_MAX };

static const char *const op_names[OP_MAX] = {
    "?", "setsid", "chdir", "capabilities", "ids", "no_new_privs", "landlock",
    "exec_label", "seccomp", "execve", "setns", "chroot", "fork", "controlling_tty", "umask",
    "seccomp_early", "capability_sets", "groups"};

/* The only order steps may come in (opcodes are numbered as they were
 * added, ranks say where each runs). Two kinds of one rank are
 * alternatives: a plan holds one of them at most. */
static const unsigned op_rank[OP_MAX] = {
    [OP_SETNS] = 1, [OP_CHROOT] = 2, [OP_FORK] = 3, [OP_SETSID] = 4, [OP_CTTY] = 5,
    [OP_UMASK] = 6, [OP_CHDIR] = 7, [OP_SECCOMP_EARLY] = 8, [OP_CAPS] = 9,
    [OP_CAPSETS] = 9, [OP_GROUPS] = 10, [OP_IDS] = 11, [OP_NNP] = 12, [OP_LANDLOCK] = 13,
    [OP_EXEC_LABEL] = 14, [OP_SECCOMP] = 15, [OP_EXECVE] = 16};

#define MAX_NS 16

struct step {
    unsigned op;
    const uint8_t *body;
    uint32_t len;
};

static int err_fd = 2;
static int trace_fd = -1;
static int check_only;

/* ------------------------------------------------------------ errors */

static void json_str(char *out, size_t cap, size_t *n, const char *s)
{
    for (; *s && *n + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[(*n)++] = '\\';
            out[(*n)++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            *n += (size_t)snprintf(out + *n, cap - *n, "\\u%04x", c);
        } else {
            out[(*n)++] = (char)c;
        }
    }
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        buf += w;
        len -= (size_t)w;
    }
}

/* Report a failed step and exit: the one error form. */
__attribute__((noreturn, format(printf, 4, 5)))
static void fail(const char *step, int errnum, int status, const char *fmt, ...)
{
    char msg[1024], out[3072];
    size_t n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (check_only) {
        n = (size_t)snprintf(out, sizeof out, "sandbox-exec: %s: %s\n", step, msg);
        write_all(2, out, n < sizeof out ? n : sizeof out - 1);
        _exit(status);
    }
    n = (size_t)snprintf(out, sizeof out, "{\"step\": \"");
    json_str(out, sizeof out, &n, step);
    n += (size_t)snprintf(out + n, sizeof out - n, "\", \"errno\": ");
    if (errnum)
        n += (size_t)snprintf(out + n, sizeof out - n, "%d", errnum);
    else
        n += (size_t)snprintf(out + n, sizeof out - n, "null");
    n += (size_t)snprintf(out + n, sizeof out - n, ", \"message\": \"");
    json_str(out, sizeof out, &n, msg);
    n += (size_t)snprintf(out + n, sizeof out - n, "\", \"status\": %d}\n", status);
    write_all(err_fd, out, n < sizeof out ? n : sizeof out - 1);
    _exit(status);
}

#define PLAN_ERROR(...) fail("plan", 0, check_only ? 1 : 125, __VA_ARGS__)

/* ------------------------------------------------------------ reader */

struct cursor {
    const uint8_t *p, *end;
    const uint8_t *base;
};

static uint64_t rd_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void need(struct cursor *c, size_t n, const char *what)
{
    if ((size_t)(c->end - c->p) < n)
        PLAN_ERROR("truncated %s at byte %zu", what, (size_t)(c->p - c->base));
}

static uint64_t get_u(struct cursor *c, const char *what)
{
    need(c, 9, what);
    if (c->p[0] != 'u')
        PLAN_ERROR("%s: expected an integer field at byte %zu", what, (size_t)(c->p - c->base));
    uint64_t v = rd_le(c->p + 1, 8);
    c->p += 9;
    return v;
}

/* A string field, copied NUL-terminated into `out` (which has `cap` bytes). */
static const uint8_t *get_raw(struct cursor *c, char type, uint32_t *len, const char *what)
{
    need(c, 5, what);
    if (c->p[0] != (uint8_t)type)
        PLAN_ERROR("%s: expected a %s field at byte %zu", what,
                   type == 's' ? "string" : "bytes", (size_t)(c->p - c->base));
    *len = (uint32_t)rd_le(c->p + 1, 4);
    c->p += 5;
    need(c, *len, what);
    const uint8_t *r = c->p;
    c->p += *len;
    if (type == 's' && memchr(r, 0, *len))
        PLAN_ERROR("%s: string holds a NUL byte", what);
    return r;
}

static char *get_s(struct cursor *c, const char *what)
{
    uint32_t len;
    const uint8_t *r = get_raw(c, 's', &len, what);
    if (len >= PATH_MAX * 16)
        PLAN_ERROR("%s: string of %u bytes is too long", what, len);
    char *s = malloc((size_t)len + 1);
    if (!s)
        PLAN_ERROR("%s: out of memory", what);
    memcpy(s, r, len);
    s[len] = 0;
    return s;
}

static void done(struct cursor *c, const char *what)
{
    if (c->p != c->end)
        PLAN_ERROR("%s: %zu bytes after the last field", what, (size_t)(c->end - c->p));
}

static uint8_t *read_plan(int fd, size_t *len)
{
    size_t cap = 65536, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        PLAN_ERROR("out of memory");
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_PLAN)
                PLAN_ERROR("plan larger than %u bytes", MAX_PLAN);
            cap *= 2;
            uint8_t *nb = realloc(buf, cap);
            if (!nb)
                PLAN_ERROR("out of memory");
            buf = nb;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            fail("plan", errno, check_only ? 2 : 125, "read fd %d: %s", fd, strerror(errno));
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *len = n;
    return buf;
}

/* ------------------------------------------------------ parsed plan */

struct rule {
    char *path;
    uint64_t mask, common;
    uint64_t nexcl;
    char **excl;
};

struct plan {
    struct step steps[MAX_STEPS];
    unsigned nsteps;
    char *workdir;
    uint64_t keep_caps;
    uint64_t capsets[5];        /* bounding, effective, permitted, inheritable, ambient */
    int has_capsets, has_groups, has_early_seccomp;
    uint64_t umask, ngroups;
    gid_t *groups;
    uint64_t uid, gid, setgroups;
    uint64_t ll_abi, ll_handled, ll_scoped, ll_file_rights, nrules;
    struct rule *rules;
    char *exec_label;
    struct sock_filter *bpf;
    uint64_t nns, ns_fd[MAX_NS], ns_type[MAX_NS], root_fd;
    unsigned short bpf_len;
    char **argv, **envp;
};

static char **get_strv(struct cursor *c, const char *what)
{
    uint64_t n = get_u(c, what);
    if (n > MAX_ARGS)
        PLAN_ERROR("%s: %llu strings is too many", what, (unsigned long long)n);
    char **v = calloc((size_t)n + 1, sizeof *v);
    if (!v)
        PLAN_ERROR("%s: out of memory", what);
    for (uint64_t i = 0; i < n; i++)
        v[i] = get_s(c, what);
    return v;
}

static void parse_step(struct plan *pl, struct step *st)
{
    struct cursor c = {st->body, st->body + st->len, st->body};
    const char *name = op_names[st->op];
    uint32_t len;
    switch (st->op) {
    case OP_SETSID:
    case OP_NNP:
    case OP_CTTY:
        break;
    case OP_UMASK:
        pl->umask = get_u(&c, name);
        if (pl->umask > 0777)
            PLAN_ERROR("umask: %#llo out of range", (unsigned long long)pl->umask);
        break;
    case OP_CAPSETS:
        for (int i = 0; i < 5; i++)
            pl->capsets[i] = get_u(&c, name);
        pl->has_capsets = 1;
        break;
    case OP_GROUPS:
        pl->ngroups = get_u(&c, name);
        if (pl->ngroups == 0 || pl->ngroups > MAX_GROUPS)
            PLAN_ERROR("groups: %llu groups (1..%d)", (unsigned long long)pl->ngroups,
                       MAX_GROUPS);
        pl->groups = calloc((size_t)pl->ngroups, sizeof *pl->groups);
        if (!pl->groups)
            PLAN_ERROR("groups: out of memory");
        for (uint64_t i = 0; i < pl->ngroups; i++) {
            uint64_t g = get_u(&c, name);
            if (g > UINT32_MAX - 1)
                PLAN_ERROR("groups: gid %llu out of range", (unsigned long long)g);
            pl->groups[i] = (gid_t)g;
        }
        pl->has_groups = 1;
        break;
    case OP_CHDIR:
        pl->workdir = get_s(&c, name);
        if (pl->workdir[0] != '/')
            PLAN_ERROR("chdir: %s is not an absolute path", pl->workdir);
        break;
    case OP_CAPS:
        pl->keep_caps = get_u(&c, name);
        break;
    case OP_IDS:
        pl->uid = get_u(&c, name);
        pl->gid = get_u(&c, name);
        pl->setgroups = get_u(&c, name);
        if (pl->uid > UINT32_MAX - 1 || pl->gid > UINT32_MAX - 1 || pl->setgroups > 1)
            PLAN_ERROR("ids: uid, gid or setgroups out of range");
        break;
    case OP_LANDLOCK:
        pl->ll_abi = get_u(&c, name);
        pl->ll_handled = get_u(&c, name);
        pl->ll_scoped = get_u(&c, name);
        pl->ll_file_rights = get_u(&c, name);
        pl->nrules = get_u(&c, name);
        if (pl->ll_abi < 1 || pl->ll_abi > 64 || pl->nrules > MAX_RULES || !pl->ll_handled)
            PLAN_ERROR("landlock: ABI %llu, %llu rules, handled %#llx out of range",
                       (unsigned long long)pl->ll_abi, (unsigned long long)pl->nrules,
                       (unsigned long long)pl->ll_handled);
        pl->rules = calloc((size_t)pl->nrules + 1, sizeof *pl->rules);
        if (!pl->rules)
            PLAN_ERROR("landlock: out of memory");
        for (uint64_t i = 0; i < pl->nrules; i++) {
            struct rule *r = &pl->rules[i];
            r->path = get_s(&c, name);
            r->mask = get_u(&c, name);
            r->common = get_u(&c, name);
            if (r->path[0] != '/' || (r->mask | r->common) & ~pl->ll_handled)
                PLAN_ERROR("landlock: rule %s: relative path or rights outside the handled set",
                           r->path);
            r->nexcl = get_u(&c, name);
            if (r->nexcl > MAX_RULES)
                PLAN_ERROR("landlock: rule %s: too many excludes", r->path);
            r->excl = calloc((size_t)r->nexcl + 1, sizeof *r->excl);
            if (!r->excl)
                PLAN_ERROR("landlock: out of memory");
            for (uint64_t j = 0; j < r->nexcl; j++)
                r->excl[j] = get_s(&c, name);
        }
        break;
    case OP_EXEC_LABEL:
        pl->exec_label = get_s(&c, name);
        break;
    case OP_SETNS:
        pl->nns = get_u(&c, name);
        if (pl->nns == 0 || pl->nns > MAX_NS)
            PLAN_ERROR("setns: %llu namespaces (1..%d)", (unsigned long long)pl->nns, MAX_NS);
        for (uint64_t i = 0; i < pl->nns; i++) {
            pl->ns_fd[i] = get_u(&c, name);
            pl->ns_type[i] = get_u(&c, name);
            if (pl->ns_fd[i] > INT_MAX || (pl->ns_type[i] & ~0x7e020000ULL) || !pl->ns_type[i])
                PLAN_ERROR("setns: fd %llu or namespace type %#llx out of range",
                           (unsigned long long)pl->ns_fd[i], (unsigned long long)pl->ns_type[i]);
        }
        break;
    case OP_CHROOT:
        pl->root_fd = get_u(&c, name);
        if (pl->root_fd > INT_MAX)
            PLAN_ERROR("chroot: fd out of range");
        break;
    case OP_FORK:
        break;
    case OP_SECCOMP_EARLY:
    case OP_SECCOMP: {
        if (st->op == OP_SECCOMP_EARLY)
            pl->has_early_seccomp = 1;
        else if (pl->has_early_seccomp)
            PLAN_ERROR("seccomp: a second filter after seccomp_early");
        const uint8_t *b = get_raw(&c, 'b', &len, name);
        if (len == 0 || len % sizeof(struct sock_filter) || len / 8 > MAX_BPF_INSNS)
            PLAN_ERROR("seccomp: a program of %u bytes is not 1..%d instructions", len,
                       MAX_BPF_INSNS);
        pl->bpf = malloc(len);
        if (!pl->bpf)
            PLAN_ERROR("seccomp: out of memory");
        memcpy(pl->bpf, b, len);
        pl->bpf_len = (unsigned short)(len / sizeof(struct sock_filter));
        break;
    }
    case OP_EXECVE:
        pl->argv = get_strv(&c, name);
        if (!pl->argv[0] || !pl->argv[0][0])
            PLAN_ERROR("execve: empty argv");
        pl->envp = get_strv(&c, name);
        for (char **e = pl->envp; *e; e++)
            if (!strchr(*e, '='))
                PLAN_ERROR("execve: environment entry without '='");
        break;
    }
    done(&c, name);
}

static void parse_plan(struct plan *pl, const uint8_t *buf, size_t len)
{
    struct cursor c = {buf, buf + len, buf};
    need(&c, 12, "header");
    if (memcmp(buf, "SBXE", 4) != 0)
        PLAN_ERROR("not a sandbox plan (bad magic)");
    unsigned version = (unsigned)rd_le(buf + 4, 2);
    if (version != WIRE_VERSION)
        PLAN_ERROR("wire version %u, this executor reads %d: reinstall sandbox", version,
                   WIRE_VERSION);
    if (rd_le(buf + 6, 2) != 0)
        PLAN_ERROR("reserved header bits set");
    uint64_t n = rd_le(buf + 8, 4);
    if (n == 0 || n > MAX_STEPS)
        PLAN_ERROR("%llu steps (1..%d)", (unsigned long long)n, MAX_STEPS);
    c.p += 12;
    unsigned last = 0;
    for (uint64_t i = 0; i < n; i++) {
        need(&c, 8, "step header");
        struct step *st = &pl->steps[i];
        st->op = (unsigned)rd_le(c.p, 2);
        if (rd_le(c.p + 2, 2) != 0)
            PLAN_ERROR("step %llu: reserved bits set", (unsigned long long)i + 1);
        st->len = (uint32_t)rd_le(c.p + 4, 4);
        c.p += 8;
        if (st->op == 0 || st->op >= OP_MAX)
            PLAN_ERROR("step %llu: unknown step kind %u (a newer plan? reinstall sandbox)",
                       (unsigned long long)i + 1, st->op);
        /* the order is the security property: never backwards, once each */
        if (op_rank[st->op] <= op_rank[last])
            PLAN_ERROR("step %llu: %s after %s", (unsigned long long)i + 1, op_names[st->op],
                       op_names[last]);
        last = st->op;
        need(&c, st->len, op_names[st->op]);
        st->body = c.p;
        c.p += st->len;
        parse_step(pl, st);
    }
    if (last != OP_EXECVE)
        PLAN_ERROR("the last step is %s, not execve", op_names[last]);
    if (c.p != c.end)
        PLAN_ERROR("%zu bytes after the last step", (size_t)(c.end - c.p));
    pl->nsteps = (unsigned)n;
}

/* ----------------------------------------------------------- steps */

struct cap_header { uint32_t version; int pid; };
struct cap_data { uint32_t effective, permitted, inheritable; };

static int last_cap(void)
{
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    char b[16] = {0};
    if (fd < 0 || read(fd, b, sizeof b - 1) <= 0)
        fail("capabilities", errno, 125, "read /proc/sys/kernel/cap_last_cap: %s",
             strerror(errno));
    close(fd);
    return atoi(b);
}

static void set_caps(uint64_t eff_prm, const char *step)
{
    struct cap_header h = {0x20080522, 0};      /* _LINUX_CAPABILITY_VERSION_3 */
    struct cap_data d[2] = {
        {(uint32_t)eff_prm, (uint32_t)eff_prm, 0},
        {(uint32_t)(eff_prm >> 32), (uint32_t)(eff_prm >> 32), 0}};
    if (syscall(SYS_capset, &h, d) != 0)
        fail(step, errno, 125, "capset: %s", strerror(errno));
}

static void step_caps(const struct plan *pl)
{
    /* the bounding set first: dropping needs CAP_SETPCAP, which the payload
     * may not keep; ambient cleared; inheritable goes with the ids step */
    int last = last_cap();
    for (int n = 0; n <= last && n < 64; n++)
        if (!(pl->keep_caps & (1ULL << n)) && prctl(PR_CAPBSET_DROP, n, 0, 0, 0) != 0)
            fail("capabilities", errno, 125, "drop %d from the bounding set: %s", n,
                 strerror(errno));
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
        fail("capabilities", errno, 125, "clear ambient: %s", strerror(errno));
}

/* OCI's exact sets, first half: the bounding set (dropping needs
 * CAP_SETPCAP, which the payload may not keep), ambient cleared, and
 * KEEPCAPS so a non-root uid keeps the permitted set through the ids step */
static void step_capsets(const struct plan *pl)
{
    int last = last_cap();
    for (int n = 0; n <= last && n < 64; n++)
        if (!(pl->capsets[0] & (1ULL << n)) && prctl(PR_CAPBSET_DROP, n, 0, 0, 0) != 0)
            fail("capability_sets", errno, 125, "drop %d from the bounding set: %s", n,
                 strerror(errno));
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
        fail("capability_sets", errno, 125, "clear ambient: %s", strerror(errno));
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0)
        fail("capability_sets", errno, 125, "keep capabilities: %s", strerror(errno));
}

/* second half, after the id change: permitted, effective (within
 * permitted) and inheritable exactly; ambient only where the kernel allows
 * it, permitted and inheritable (as runc: fewer, never more) */
static void apply_capsets(const struct plan *pl)
{
    uint64_t eff = pl->capsets[1], prm = pl->capsets[2], inh = pl->capsets[3];
    uint64_t amb = pl->capsets[4] & inh & prm;
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0)
        fail("ids", errno, 125, "reset keep capabilities: %s", strerror(errno));
    struct cap_header h = {0x20080522, 0};
    struct cap_data d[2] = {
        {(uint32_t)(eff & prm), (uint32_t)prm, (uint32_t)inh},
        {(uint32_t)((eff & prm) >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32)}};
    if (syscall(SYS_capset, &h, d) != 0)
        fail("ids", errno, 125, "capset: %s", strerror(errno));
    for (int n = 0; n < 64; n++)
        if ((amb & (1ULL << n)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, n, 0, 0) != 0)
            fail("ids", errno, 125, "raise ambient %d: %s", n, strerror(errno));
}

static void step_ids(const struct plan *pl)
{
    /* a groups step before this one set the supplementary groups: keep them */
    if (pl->setgroups && !pl->has_groups && setgroups(0, NULL) != 0)
        fail("ids", errno, 125, "setgroups: %s", strerror(errno));
    if (setresgid((gid_t)pl->gid, (gid_t)pl->gid, (gid_t)pl->gid) != 0)
        fail("ids", errno, 125, "setresgid %llu: %s", (unsigned long long)pl->gid,
             strerror(errno));
    if (setresuid((uid_t)pl->uid, (uid_t)pl->uid, (uid_t)pl->uid) != 0)
        fail("ids", errno, 125, "setresuid %llu: %s", (unsigned long long)pl->uid,
             strerror(errno));
    if (pl->has_capsets) {
        apply_capsets(pl);
        return;
    }
    /* root keeps exactly the kept set; any other uid keeps nothing (Docker) */
    set_caps(pl->uid == 0 ? pl->keep_caps : 0, "ids");
}

/* -- Landlock: the same expansion as runtime/_landlock.py `_expand`. */

struct ll_attr { uint64_t handled_fs, handled_net, scoped; };
struct ll_path_beneath { uint64_t allowed; int32_t parent_fd; } __attribute__((packed));

static void ll_add(int ruleset, const struct plan *pl, const char *path, uint64_t mask)
{
    int fd = open(path, O_PATH | O_CLOEXEC);
    struct stat sb;
    if (fd < 0) {
        if (errno == ENOENT)
            return;             /* a missing path stays denied */
        fail("landlock", errno, 125, "open %s: %s", path, strerror(errno));
    }
    if (fstat(fd, &sb) != 0)
        fail("landlock", errno, 125, "stat %s: %s", path, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        mask &= pl->ll_file_rights;
    if (mask) {
        struct ll_path_beneath pb = {mask, fd};
        if (syscall(445 /* landlock_add_rule */, ruleset, 1 /* PATH_BENEATH */, &pb, 0) != 0)
            fail("landlock", errno, 125, "add rule %s: %s", path, strerror(errno));
    }
    close(fd);
}

static int under(const char *e, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(e, dir, n) == 0 && e[n] == '/';
}

static void ll_split(int ruleset, const struct plan *pl, const char *folder, uint64_t mask,
                     uint64_t common, char **excl, uint64_t nexcl, int depth)
{
    if (depth > 64)
        fail("landlock", ELOOP, 125, "%s: excludes nested too deep", folder);
    if (common)
        ll_add(ruleset, pl, folder, common);
    DIR *d = opendir(folder);
    if (!d) {
        if (errno == ENOENT)
            return;
        fail("landlock", errno, 125, "read %s: %s", folder, strerror(errno));
    }
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, ".."))
            continue;
        char child[PATH_MAX];
        if (snprintf(child, sizeof child, "%s/%s", strcmp(folder, "/") ? folder : "",
                     ent->d_name) >= (int)sizeof child)
            fail("landlock", ENAMETOOLONG, 125, "%s/%s: path too long", folder, ent->d_name);
        int excluded = 0;
        char **below = calloc((size_t)nexcl + 1, sizeof *below);
        uint64_t nb = 0;
        if (!below)
            fail("landlock", ENOMEM, 125, "out of memory");
        for (uint64_t i = 0; i < nexcl; i++) {
            if (!strcmp(excl[i], child))
                excluded = 1;
            else if (under(excl[i], child))
                below[nb++] = excl[i];
        }
        if (!excluded) {
            struct stat sb;
            if (nb)
                ll_split(ruleset, pl, child, mask, common, below, nb, depth + 1);
            else if (lstat(child, &sb) == 0 && !S_ISLNK(sb.st_mode))
                ll_add(ruleset, pl, child, mask);   /* a symlink needs no rule */
        }
        free(below);
    }
    closedir(d);
}

static void step_landlock(const struct plan *pl)
{
    long abi = syscall(444, NULL, 0, 1 /* LANDLOCK_CREATE_RULESET_VERSION */);
    if (abi < 0)
        fail("landlock", errno, 125, "Landlock is not available: %s", strerror(errno));
    if ((uint64_t)abi < pl->ll_abi)
        fail("landlock", 0, 125, "the kernel has Landlock ABI %ld, the plan needs %llu", abi,
             (unsigned long long)pl->ll_abi);
    struct ll_attr attr = {pl->ll_handled, 0, pl->ll_scoped};
    size_t size = pl->ll_abi >= 6 ? 24 : pl->ll_abi >= 4 ? 16 : 8;
    int rs = (int)syscall(444, &attr, size, 0);
    if (rs < 0)
        fail("landlock", errno, 125, "create ruleset (ABI %llu): %s",
             (unsigned long long)pl->ll_abi, strerror(errno));
    for (uint64_t i = 0; i < pl->nrules; i++) {
        const struct rule *r = &pl->rules[i];
        if (r->nexcl == 0)
            ll_add(rs, pl, r->path, r->mask);
        else
            ll_split(rs, pl, r->path, r->mask, r->common, r->excl, r->nexcl, 0);
    }
    if (syscall(446 /* landlock_restrict_self */, rs, 0) != 0)
        fail("landlock", errno, 125, "restrict self: %s", strerror(errno));
    close(rs);
}

static void step_exec_label(const struct plan *pl)
{
    /* before seccomp, which may forbid the write; a refused context fails closed */
    int fd = open("/proc/thread-self/attr/exec", O_WRONLY | O_CLOEXEC);
    size_t n = strlen(pl->exec_label);
    if (fd < 0 || write(fd, pl->exec_label, n) != (ssize_t)n)
        fail("exec_label", errno, 125, "%s: %s", pl->exec_label, strerror(errno));
    close(fd);
}

static void step_seccomp(const struct plan *pl, const char *step)
{
    struct sock_fprog prog = {pl->bpf_len, pl->bpf};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0)
        fail(step, errno, 125, "load %u instructions: %s", pl->bpf_len, strerror(errno));
}

static volatile pid_t forward_to;

static void forward(int sig)
{
    if (forward_to > 0)
        kill(forward_to, sig);
}

/* fork: a pid namespace joined by setns applies to children only. The
 * parent stays outside it, forwards signals and exits like the child. */
static void step_fork(void)
{
    pid_t pid = fork();
    if (pid < 0)
        fail("fork", errno, 125, "%s", strerror(errno));
    if (pid == 0)
        return;
    close(err_fd);          /* the caller reads EOF when the child execs */
    forward_to = pid;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            _exit(125);
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

static void trace(const struct plan *pl, unsigned op)
{
    char b[512];
    int n;
    if (trace_fd < 0)
        return;
    switch (op) {
    case OP_CHDIR:
        n = snprintf(b, sizeof b, "chdir %s\n", pl->workdir);
        break;
    case OP_CAPS:
        n = snprintf(b, sizeof b, "capabilities %#llx\n", (unsigned long long)pl->keep_caps);
        break;
    case OP_IDS:
        n = snprintf(b, sizeof b, "ids %llu %llu %llu\n", (unsigned long long)pl->uid,
                     (unsigned long long)pl->gid, (unsigned long long)pl->setgroups);
        break;
    case OP_LANDLOCK:
        n = snprintf(b, sizeof b, "landlock %llu %llu\n", (unsigned long long)pl->ll_abi,
                     (unsigned long long)pl->nrules);
        break;
    case OP_SECCOMP:
    case OP_SECCOMP_EARLY:
        n = snprintf(b, sizeof b, "%s %u\n", op_names[op], pl->bpf_len);
        break;
    case OP_UMASK:
        n = snprintf(b, sizeof b, "umask %04llo\n", (unsigned long long)pl->umask);
        break;
    case OP_CAPSETS:
        n = snprintf(b, sizeof b, "capability_sets %#llx %#llx %#llx %#llx %#llx\n",
                     (unsigned long long)pl->capsets[0], (unsigned long long)pl->capsets[1],
                     (unsigned long long)pl->capsets[2], (unsigned long long)pl->capsets[3],
                     (unsigned long long)pl->capsets[4]);
        break;
    case OP_GROUPS: {
        /* as many as fit, comma-separated; the count first */
        n = snprintf(b, sizeof b, "groups %llu", (unsigned long long)pl->ngroups);
        for (uint64_t i = 0; i < pl->ngroups && n > 0 && (size_t)n < sizeof b - 16; i++)
            n += snprintf(b + n, sizeof b - (size_t)n, "%s%u", i ? "," : " ",
                          (unsigned)pl->groups[i]);
        if (n > 0 && (size_t)n < sizeof b - 1)
            b[n++] = '\n';
        break;
    }
    case OP_EXECVE:
        n = snprintf(b, sizeof b, "execve %s\n", pl->argv[0]);
        break;
    default:
        n = snprintf(b, sizeof b, "%s\n", op_names[op]);
    }
    write_all(trace_fd, b, n > 0 && (size_t)n < sizeof b ? (size_t)n : sizeof b - 1);
}

/* execve argv[0], looked up on the payload's PATH exactly as Python's
 * os.execvpe does (no /bin/sh retry on ENOEXEC, unlike glibc's execvpe):
 * the first error other than "not there" wins. Never returns. */
__attribute__((noreturn))
static void exec_command(const struct plan *pl)
{
    const char *file = pl->argv[0], *path = "/bin:/usr/bin";
    int saved = 0, last = ENOENT;
    if (strchr(file, '/')) {
        execve(file, pl->argv, pl->envp);
        last = errno;
    } else {
        for (char **e = pl->envp; *e; e++)
            if (!strncmp(*e, "PATH=", 5))
                path = *e + 5;
        for (const char *p = path;; p++) {
            const char *end = strchr(p, ':');
            size_t dl = end ? (size_t)(end - p) : strlen(p);
            char full[PATH_MAX];
            int n = dl ? snprintf(full, sizeof full, "%.*s/%s", (int)dl, p, file)
                       : snprintf(full, sizeof full, "%s", file);
            if (n > 0 && (size_t)n < sizeof full) {
                execve(full, pl->argv, pl->envp);
                last = errno;
                if (last != ENOENT && last != ENOTDIR && !saved)
                    saved = last;
            }
            if (!end)
                break;
            p = end;
        }
    }
    int err = saved ? saved : last;
    fail("execve", err, err == ENOENT || err == ENOTDIR ? 127 : 126, "%s: %s", file,
         strerror(err));
}

static int parse_fd(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > INT_MAX) {
        fprintf(stderr, "sandbox-exec: %s is not a file descriptor number\n", s);
        exit(2);
    }
    return (int)v;
}

static struct plan the_plan;

int main(int argc, char **argv)
{
    int plan_fd = 0, resume_fd = -1, pause_ms = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--check")) {
            check_only = 1;
        } else if (i + 1 < argc && !strcmp(argv[i], "--plan-fd")) {
            plan_fd = parse_fd(argv[++i]);
        } else if (i + 1 < argc && !strcmp(argv[i], "--error-fd")) {
            err_fd = parse_fd(argv[++i]);
        } else if (i + 1 < argc && !strcmp(argv[i], "--sync")) {
            resume_fd = parse_fd(argv[++i]);
        } else if (i + 1 < argc && !strcmp(argv[i], "--trace")) {
            trace_fd = parse_fd(argv[++i]);
        } else if (i + 1 < argc && !strcmp(argv[i], "--test-pause-ms")) {
            pause_ms = parse_fd(argv[++i]);
        } else {
            fprintf(stderr, "usage: sandbox-exec [--check] [--plan-fd N] [--error-fd N] "
                            "[--sync RESUME_FD] [--trace FD] [--test-pause-ms MS]\n");
            return 2;
        }
    }
    /* not dumpable from the start: nothing (in the sandbox, after setns)
     * may ptrace or read this process before it is confined; the payload's
     * execve resets it */
    if (!check_only && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        fail("start", errno, 125, "not dumpable: %s", strerror(errno));
    /* exec'd through an fd, the kernel names it after the fd's number */
    if (!check_only)
        prctl(PR_SET_NAME, "sandbox-exec", 0, 0, 0);
    size_t len;
    uint8_t *buf = read_plan(plan_fd, &len);
    struct plan *pl = &the_plan;
    parse_plan(pl, buf, len);
    if (check_only) {
        /* dry mode: with --trace, the steps it would perform, in order */
        for (unsigned i = 0; i < pl->nsteps; i++)
            trace(pl, pl->steps[i].op);
        printf("ok: %u steps\n", pl->nsteps);
        return 0;
    }
    if (plan_fd > 2)
        close(plan_fd);
    /* the supervisor's pipes end at the payload's execve (it reads EOF then) */
    if (fcntl(err_fd, F_SETFD, FD_CLOEXEC) != 0 || (resume_fd >= 0 &&
        fcntl(resume_fd, F_SETFD, FD_CLOEXEC) != 0) || (trace_fd >= 0 &&
        fcntl(trace_fd, F_SETFD, FD_CLOEXEC) != 0))
        fail("start", errno, 125, "close-on-exec: %s", strerror(errno));
    for (unsigned i = 0; i < pl->nsteps; i++) {
        unsigned op = pl->steps[i].op;
        trace(pl, op);
        switch (op) {
        case OP_SETNS:
            for (uint64_t j = 0; j < pl->nns; j++) {
                if (setns((int)pl->ns_fd[j], (int)pl->ns_type[j]) != 0)
                    fail("setns", errno, 125, "namespace %#llx: %s",
                         (unsigned long long)pl->ns_type[j], strerror(errno));
                close((int)pl->ns_fd[j]);
            }
            break;
        case OP_CHROOT:
            if (fchdir((int)pl->root_fd) != 0 || chroot(".") != 0 || chdir("/") != 0)
                fail("chroot", errno, 125, "%s", strerror(errno));
            close((int)pl->root_fd);
            break;
        case OP_FORK:
            step_fork();
            break;
        case OP_SETSID:
            if (setsid() < 0)
                fail("setsid", errno, 125, "%s", strerror(errno));
            break;
        case OP_CHDIR:
            if (chdir(pl->workdir) != 0)
                fail("chdir", errno, 125, "%s: %s", pl->workdir, strerror(errno));
            break;
        case OP_CTTY:
            /* the console's slave (fd 0) becomes this new session's terminal */
            if (ioctl(0, TIOCSCTTY, 0) != 0)
                fail("controlling_tty", errno, 125, "TIOCSCTTY on fd 0: %s", strerror(errno));
            break;
        case OP_UMASK:
            umask((mode_t)pl->umask);
            break;
        case OP_SECCOMP_EARLY:
            step_seccomp(pl, "seccomp_early");
            break;
        case OP_CAPS:
            step_caps(pl);
            break;
        case OP_CAPSETS:
            step_capsets(pl);
            break;
        case OP_GROUPS:
            if (setgroups((size_t)pl->ngroups, pl->groups) != 0)
                fail("groups", errno, 125, "setgroups (%llu groups): %s",
                     (unsigned long long)pl->ngroups, strerror(errno));
            break;
        case OP_IDS:
            step_ids(pl);
            break;
        case OP_NNP:
            if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
                fail("no_new_privs", errno, 125, "%s", strerror(errno));
            break;
        case OP_LANDLOCK:
            step_landlock(pl);
            break;
        case OP_EXEC_LABEL:
            step_exec_label(pl);
            break;
        case OP_SECCOMP:
            step_seccomp(pl, "seccomp");
            break;
        case OP_EXECVE:
            if (resume_fd >= 0) {
                /* confined, stopped before execve: the supervisor reads our
                 * state from /proc, then says X (the audit record's word) */
                char x = 0;
                write_all(err_fd, "S\n", 2);
                if (read(resume_fd, &x, 1) != 1 || x != 'X')
                    _exit(125);             /* the supervisor is gone */
                close(resume_fd);
            }
            if (pause_ms > 0) {
                /* TEST HOOK (SANDBOX_TEST_ENTER_PAUSE): hold, fully confined,
                 * just before execve, so a test can probe this process */
                struct timespec ts = {pause_ms / 1000, (long)(pause_ms % 1000) * 1000000L};
                while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
                    ;
            }
            exec_command(pl);
        }
    }
    fail("plan", 0, 125, "no execve step");
}
