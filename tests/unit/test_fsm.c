/*
 * The migration state machine (lib/fsm, <ferry/migration.h>), exhaustively:
 * every valid flag set, every (from, to) pair including ERROR and
 * out-of-range values. The expected answers are data typed in from
 * PROTOCOL.md §8.3 (direct arcs) and §8.4 (effective next-step tables and
 * paths); nothing expected is computed with the code under test. The
 * property tests (arcs, saving group, shortest) check the code's paths
 * against the §8.3 arc lists with an independent breadth-first search.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>

#include <ferry/migration.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Short state names so the tables line up with PROTOCOL.md. Literal kernel
 * values, not the library's enum: test_state_values checks that. */
enum {
	ERR = 0,
	STOP = 1,
	RUN = 2,
	SCOPY = 3,
	RESUM = 4,
	RP2P = 5,
	PRE = 6,
	PP2P = 7,
	NSTATES = 8,
	X = -1, /* refused with -EINVAL */
};

/* The four valid flag sets (PROTOCOL.md §7.3), literal bit values. */
#define F_SC   0x1u
#define F_P2P  0x2u
#define F_PRE  0x4u
enum { BASE, WITH_P2P, WITH_PRE, WITH_ALL, NSETS };
static const uint64_t flag_sets[NSETS] = {
	[BASE] = F_SC,
	[WITH_P2P] = F_SC | F_P2P,
	[WITH_PRE] = F_SC | F_PRE,
	[WITH_ALL] = F_SC | F_P2P | F_PRE,
};
static const char *const set_names[NSETS] = {
	"STOP_COPY", "STOP_COPY|P2P", "STOP_COPY|PRE_COPY", "STOP_COPY|P2P|PRE_COPY",
};

/* Every state value a peer could send that the tests try: all states plus
 * out-of-range ones (8 is the classic off-by-one). */
static const uint32_t probe_states[] = {
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x80000000u, 0xffffffffu,
};

/* Flag sets that must be refused everywhere. */
static const uint64_t bad_flag_sets[] = {
	0, F_P2P, F_PRE, F_P2P | F_PRE, 0x8, F_SC | 0x8, F_SC | F_P2P | F_PRE | 0x8,
	F_SC | (1ull << 32), F_SC | (1ull << 63), UINT64_MAX,
};

/* §8.4 "reachable" lists: the states each flag set may request. */
static const bool supported[NSETS][NSTATES] = {
	/*            ERR    STOP  RUN   SCOPY RESUM RP2P   PRE    PP2P */
	[BASE]     = { false, true, true, true, true, false, false, false },
	[WITH_P2P] = { false, true, true, true, true, true,  false, false },
	[WITH_PRE] = { false, true, true, true, true, false, true,  false },
	[WITH_ALL] = { false, true, true, true, true, true,  true,  true  },
};

/*
 * §8.4 "Effective next-step tables", extended to every state: rows are the
 * current state, columns the target. cur == target on a supported state
 * gives the target itself (no-op success); X = -EINVAL (ERROR involved,
 * state not supported, or blocked).
 */
static const int8_t exp_next[NSETS][NSTATES][NSTATES] = {
	[BASE] = {
		/*          to: ERR STOP   RUN    SCOPY  RESUM  RP2P  PRE   PP2P */
		[ERR]   = { X,  X,     X,     X,     X,     X,    X,    X },
		[STOP]  = { X,  STOP,  RUN,   SCOPY, RESUM, X,    X,    X },
		[RUN]   = { X,  STOP,  RUN,   STOP,  STOP,  X,    X,    X },
		[SCOPY] = { X,  STOP,  STOP,  SCOPY, STOP,  X,    X,    X },
		[RESUM] = { X,  STOP,  STOP,  STOP,  RESUM, X,    X,    X },
		[RP2P]  = { X,  X,     X,     X,     X,     X,    X,    X },
		[PRE]   = { X,  X,     X,     X,     X,     X,    X,    X },
		[PP2P]  = { X,  X,     X,     X,     X,     X,    X,    X },
	},
	[WITH_P2P] = {
		/*          to: ERR STOP   RUN    SCOPY  RESUM  RP2P  PRE   PP2P */
		[ERR]   = { X,  X,     X,     X,     X,     X,    X,    X },
		[STOP]  = { X,  STOP,  RP2P,  SCOPY, RESUM, RP2P, X,    X },
		[RUN]   = { X,  RP2P,  RUN,   RP2P,  RP2P,  RP2P, X,    X },
		[SCOPY] = { X,  STOP,  STOP,  SCOPY, STOP,  STOP, X,    X },
		[RESUM] = { X,  STOP,  STOP,  STOP,  RESUM, STOP, X,    X },
		[RP2P]  = { X,  STOP,  RUN,   STOP,  STOP,  RP2P, X,    X },
		[PRE]   = { X,  X,     X,     X,     X,     X,    X,    X },
		[PP2P]  = { X,  X,     X,     X,     X,     X,    X,    X },
	},
	[WITH_PRE] = {
		/*          to: ERR STOP   RUN    SCOPY  RESUM  RP2P  PRE   PP2P */
		[ERR]   = { X,  X,     X,     X,     X,     X,    X,    X },
		[STOP]  = { X,  STOP,  RUN,   SCOPY, RESUM, X,    RUN,  X },
		[RUN]   = { X,  STOP,  RUN,   STOP,  STOP,  X,    PRE,  X },
		[SCOPY] = { X,  STOP,  STOP,  SCOPY, STOP,  X,    X,    X },
		[RESUM] = { X,  STOP,  STOP,  STOP,  RESUM, X,    STOP, X },
		[RP2P]  = { X,  X,     X,     X,     X,     X,    X,    X },
		[PRE]   = { X,  RUN,   RUN,   SCOPY, RUN,   X,    PRE,  X },
		[PP2P]  = { X,  X,     X,     X,     X,     X,    X,    X },
	},
	[WITH_ALL] = {
		/*          to: ERR STOP   RUN    SCOPY  RESUM  RP2P  PRE   PP2P */
		[ERR]   = { X,  X,     X,     X,     X,     X,    X,    X },
		[STOP]  = { X,  STOP,  RP2P,  SCOPY, RESUM, RP2P, RP2P, RP2P },
		[RUN]   = { X,  RP2P,  RUN,   RP2P,  RP2P,  RP2P, PRE,  RP2P },
		[SCOPY] = { X,  STOP,  STOP,  SCOPY, STOP,  STOP, X,    X },
		[RESUM] = { X,  STOP,  STOP,  STOP,  RESUM, STOP, STOP, STOP },
		[RP2P]  = { X,  STOP,  RUN,   STOP,  STOP,  RP2P, RUN,  PP2P },
		[PRE]   = { X,  RUN,   RUN,   PP2P,  RUN,   RUN,  PRE,  PP2P },
		[PP2P]  = { X,  RP2P,  RP2P,  SCOPY, RP2P,  RP2P, PRE,  PP2P },
	},
};

/*
 * Full paths for every supported from != to that is not blocked: the states
 * after `from`, ending with `to`. From the §8.4 tables and the "Full paths"
 * list, and the kernel's list of combination transitions. Pairs not listed
 * here (and not from == to) must be refused.
 */
struct path_case {
	int8_t from, to;
	int n;
	int8_t steps[NSTATES];
};
#define PATH(f, t, ...) \
	{ (f), (t), (int)sizeof((int8_t[]){ __VA_ARGS__ }), { __VA_ARGS__ } }

static const struct path_case paths_base[] = {
	PATH(STOP, RUN, RUN),
	PATH(STOP, SCOPY, SCOPY),
	PATH(STOP, RESUM, RESUM),
	PATH(RUN, STOP, STOP),
	PATH(RUN, SCOPY, STOP, SCOPY),
	PATH(RUN, RESUM, STOP, RESUM),
	PATH(SCOPY, STOP, STOP),
	PATH(SCOPY, RUN, STOP, RUN),
	PATH(SCOPY, RESUM, STOP, RESUM),
	PATH(RESUM, STOP, STOP),
	PATH(RESUM, RUN, STOP, RUN),
	PATH(RESUM, SCOPY, STOP, SCOPY),
};

static const struct path_case paths_p2p[] = {
	PATH(STOP, RUN, RP2P, RUN),
	PATH(STOP, SCOPY, SCOPY),
	PATH(STOP, RESUM, RESUM),
	PATH(STOP, RP2P, RP2P),
	PATH(RUN, STOP, RP2P, STOP),
	PATH(RUN, SCOPY, RP2P, STOP, SCOPY),
	PATH(RUN, RESUM, RP2P, STOP, RESUM),
	PATH(RUN, RP2P, RP2P),
	PATH(SCOPY, STOP, STOP),
	PATH(SCOPY, RUN, STOP, RP2P, RUN),
	PATH(SCOPY, RESUM, STOP, RESUM),
	PATH(SCOPY, RP2P, STOP, RP2P),
	PATH(RESUM, STOP, STOP),
	PATH(RESUM, RUN, STOP, RP2P, RUN),
	PATH(RESUM, SCOPY, STOP, SCOPY),
	PATH(RESUM, RP2P, STOP, RP2P),
	PATH(RP2P, STOP, STOP),
	PATH(RP2P, RUN, RUN),
	PATH(RP2P, SCOPY, STOP, SCOPY),
	PATH(RP2P, RESUM, STOP, RESUM),
};

/* The vfio-user case (libvfio-user always advertises it). */
static const struct path_case paths_pre[] = {
	PATH(STOP, RUN, RUN),
	PATH(STOP, SCOPY, SCOPY),
	PATH(STOP, RESUM, RESUM),
	PATH(STOP, PRE, RUN, PRE),
	PATH(RUN, STOP, STOP),
	PATH(RUN, SCOPY, STOP, SCOPY),
	PATH(RUN, RESUM, STOP, RESUM),
	PATH(RUN, PRE, PRE),
	PATH(SCOPY, STOP, STOP),
	PATH(SCOPY, RUN, STOP, RUN),
	PATH(SCOPY, RESUM, STOP, RESUM),
	/* SCOPY -> PRE: blocked */
	PATH(RESUM, STOP, STOP),
	PATH(RESUM, RUN, STOP, RUN),
	PATH(RESUM, SCOPY, STOP, SCOPY),
	PATH(RESUM, PRE, STOP, RUN, PRE),
	PATH(PRE, STOP, RUN, STOP),
	PATH(PRE, RUN, RUN),
	PATH(PRE, SCOPY, SCOPY),
	PATH(PRE, RESUM, RUN, STOP, RESUM),
};

static const struct path_case paths_all[] = {
	PATH(STOP, RUN, RP2P, RUN),
	PATH(STOP, SCOPY, SCOPY),
	PATH(STOP, RESUM, RESUM),
	PATH(STOP, RP2P, RP2P),
	PATH(STOP, PRE, RP2P, RUN, PRE),
	PATH(STOP, PP2P, RP2P, PP2P),
	PATH(RUN, STOP, RP2P, STOP),
	PATH(RUN, SCOPY, RP2P, STOP, SCOPY),
	PATH(RUN, RESUM, RP2P, STOP, RESUM),
	PATH(RUN, RP2P, RP2P),
	PATH(RUN, PRE, PRE),
	PATH(RUN, PP2P, RP2P, PP2P),
	PATH(SCOPY, STOP, STOP),
	PATH(SCOPY, RUN, STOP, RP2P, RUN),
	PATH(SCOPY, RESUM, STOP, RESUM),
	PATH(SCOPY, RP2P, STOP, RP2P),
	/* SCOPY -> PRE, SCOPY -> PP2P: blocked */
	PATH(RESUM, STOP, STOP),
	PATH(RESUM, RUN, STOP, RP2P, RUN),
	PATH(RESUM, SCOPY, STOP, SCOPY),
	PATH(RESUM, RP2P, STOP, RP2P),
	PATH(RESUM, PRE, STOP, RP2P, RUN, PRE),
	PATH(RESUM, PP2P, STOP, RP2P, PP2P),
	PATH(RP2P, STOP, STOP),
	PATH(RP2P, RUN, RUN),
	PATH(RP2P, SCOPY, STOP, SCOPY),
	PATH(RP2P, RESUM, STOP, RESUM),
	PATH(RP2P, PRE, RUN, PRE),
	PATH(RP2P, PP2P, PP2P),
	PATH(PRE, STOP, RUN, RP2P, STOP),
	PATH(PRE, RUN, RUN),
	PATH(PRE, SCOPY, PP2P, SCOPY),
	PATH(PRE, RESUM, RUN, RP2P, STOP, RESUM),
	PATH(PRE, RP2P, RUN, RP2P),
	PATH(PRE, PP2P, PP2P),
	PATH(PP2P, STOP, RP2P, STOP),
	PATH(PP2P, RUN, RP2P, RUN),
	PATH(PP2P, SCOPY, SCOPY),
	PATH(PP2P, RESUM, RP2P, STOP, RESUM),
	PATH(PP2P, RP2P, RP2P),
	PATH(PP2P, PRE, PRE),
};

static const struct {
	const struct path_case *cases;
	size_t count;
} exp_paths[NSETS] = {
	[BASE] = { paths_base, ARRAY_LEN(paths_base) },
	[WITH_P2P] = { paths_p2p, ARRAY_LEN(paths_p2p) },
	[WITH_PRE] = { paths_pre, ARRAY_LEN(paths_pre) },
	[WITH_ALL] = { paths_all, ARRAY_LEN(paths_all) },
};

/* §8.3: the direct arcs a device with each flag set implements. */
struct arc {
	int8_t from, to;
};
static const struct arc arcs_base[] = {
	{ RESUM, STOP }, { STOP, RESUM }, { STOP, SCOPY }, { SCOPY, STOP },
	{ RUN, STOP }, { STOP, RUN },
};
static const struct arc arcs_p2p[] = {
	{ RESUM, STOP }, { STOP, RESUM }, { STOP, SCOPY }, { SCOPY, STOP },
	{ RUN, RP2P }, { RP2P, RUN }, { RP2P, STOP }, { STOP, RP2P },
};
static const struct arc arcs_pre[] = {
	{ RESUM, STOP }, { STOP, RESUM }, { STOP, SCOPY }, { SCOPY, STOP },
	{ RUN, STOP }, { STOP, RUN },
	{ RUN, PRE }, { PRE, RUN }, { PRE, SCOPY },
};
static const struct arc arcs_all[] = {
	{ RESUM, STOP }, { STOP, RESUM }, { STOP, SCOPY }, { SCOPY, STOP },
	{ RUN, RP2P }, { RP2P, RUN }, { RP2P, STOP }, { STOP, RP2P },
	{ PRE, RUN }, { PRE, PP2P }, { PP2P, PRE }, { PP2P, RP2P }, { PP2P, SCOPY },
	{ RUN, PRE }, { RP2P, PP2P },
};
static const struct {
	const struct arc *arcs;
	size_t count;
} exp_arcs[NSETS] = {
	[BASE] = { arcs_base, ARRAY_LEN(arcs_base) },
	[WITH_P2P] = { arcs_p2p, ARRAY_LEN(arcs_p2p) },
	[WITH_PRE] = { arcs_pre, ARRAY_LEN(arcs_pre) },
	[WITH_ALL] = { arcs_all, ARRAY_LEN(arcs_all) },
};

/* §8.1: the saving group, typed in (not the library's predicate). */
static bool saving(uint32_t s)
{
	return s == SCOPY || s == PRE || s == PP2P;
}

static bool arc_listed(int set, uint32_t from, uint32_t to)
{
	for (size_t i = 0; i < exp_arcs[set].count; i++)
		if ((uint32_t)exp_arcs[set].arcs[i].from == from &&
		    (uint32_t)exp_arcs[set].arcs[i].to == to)
			return true;
	return false;
}

static const struct path_case *find_path(int set, uint32_t from, uint32_t to)
{
	for (size_t i = 0; i < exp_paths[set].count; i++)
		if ((uint32_t)exp_paths[set].cases[i].from == from &&
		    (uint32_t)exp_paths[set].cases[i].to == to)
			return &exp_paths[set].cases[i];
	return NULL;
}

static bool in_range(uint32_t s)
{
	return s < NSTATES;
}

/* "set S: RUNNING -> STOP_COPY" for failure messages. */
static const char *pair_desc(int set, uint32_t from, uint32_t to)
{
	static char buf[128];
	snprintf(buf, sizeof(buf), "flags %s: %s(%u) -> %s(%u)", set_names[set],
		 ferry_mig_state_name(from), from, ferry_mig_state_name(to), to);
	return buf;
}

#define expect(cond, set, from, to)                                                   \
	do {                                                                          \
		if (!(cond))                                                          \
			fail_msg("%s: %s", pair_desc((set), (from), (to)), #cond); \
	} while (0)

/* ------------------------------------------------------------------------ */

static void test_state_values(void **state)
{
	(void)state;
	/* The enum goes on the wire: it must be the kernel's numbering. */
	assert_int_equal(FERRY_MIG_ERROR, 0);
	assert_int_equal(FERRY_MIG_STOP, 1);
	assert_int_equal(FERRY_MIG_RUNNING, 2);
	assert_int_equal(FERRY_MIG_STOP_COPY, 3);
	assert_int_equal(FERRY_MIG_RESUMING, 4);
	assert_int_equal(FERRY_MIG_RUNNING_P2P, 5);
	assert_int_equal(FERRY_MIG_PRE_COPY, 6);
	assert_int_equal(FERRY_MIG_PRE_COPY_P2P, 7);
	assert_int_equal(FERRY_MIG_NUM_STATES, 8);
	assert_int_equal(FERRY_MIG_RUNNING_P2P, VFIO_DEVICE_STATE_RUNNING_P2P);
	assert_int_equal(FERRY_MIG_PRE_COPY_P2P, FERRY_STATE_PRE_COPY_P2P);
	assert_int_equal(VFIO_MIGRATION_STOP_COPY, F_SC);
	assert_int_equal(VFIO_MIGRATION_P2P, F_P2P);
	assert_int_equal(VFIO_MIGRATION_PRE_COPY, F_PRE);
}

static void test_state_names(void **state)
{
	static const char *const names[NSTATES] = {
		"ERROR", "STOP", "RUNNING", "STOP_COPY", "RESUMING", "RUNNING_P2P",
		"PRE_COPY", "PRE_COPY_P2P",
	};

	(void)state;
	for (uint32_t s = 0; s < NSTATES; s++)
		assert_string_equal(ferry_mig_state_name(s), names[s]);
	assert_string_equal(ferry_mig_state_name(8), "INVALID");
	assert_string_equal(ferry_mig_state_name(9), "INVALID");
	assert_string_equal(ferry_mig_state_name(0x80000000u), "INVALID");
	assert_string_equal(ferry_mig_state_name(0xffffffffu), "INVALID");
}

static void test_state_name_round_trip(void **state)
{
	static const struct {
		const char *name;
		int state;
	} spellings[] = {
		{ "running", RUN }, { "Running", RUN }, { "stop_copy", SCOPY },
		{ "Pre_Copy_P2P", PP2P }, { "pre_copy", PRE }, { "rEsUmInG", RESUM },
		{ "error", ERR }, { "running_p2p", RP2P }, { "stop", STOP },
	};
	static const char *const bad[] = {
		"", "INVALID", "RUN", "RUNNING ", " RUNNING", "STOP_COPYX", "STOPCOPY",
		"PRE-COPY", "2", "RUNNING\n", "RUNNING_P2P_",
	};
	enum ferry_mig_state out;

	(void)state;
	for (uint32_t s = 0; s < NSTATES; s++) {
		out = (enum ferry_mig_state)0xff;
		assert_int_equal(ferry_mig_state_from_name(ferry_mig_state_name(s), &out), 0);
		assert_int_equal(out, s);
	}
	for (size_t i = 0; i < ARRAY_LEN(spellings); i++) {
		out = (enum ferry_mig_state)0xff;
		assert_int_equal(ferry_mig_state_from_name(spellings[i].name, &out), 0);
		assert_int_equal(out, spellings[i].state);
	}
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		out = (enum ferry_mig_state)0xff;
		assert_int_equal(ferry_mig_state_from_name(bad[i], &out), -EINVAL);
		assert_int_equal(out, 0xff); /* untouched */
	}
	assert_int_equal(ferry_mig_state_from_name(NULL, &out), -EINVAL);
	assert_int_equal(ferry_mig_state_from_name("RUNNING", NULL), -EINVAL);
}

static void test_flags_valid(void **state)
{
	(void)state;
	for (int set = 0; set < NSETS; set++)
		assert_true(ferry_mig_flags_valid(flag_sets[set]));
	for (size_t i = 0; i < ARRAY_LEN(bad_flag_sets); i++)
		assert_false(ferry_mig_flags_valid(bad_flag_sets[i]));
}

static void test_state_supported(void **state)
{
	(void)state;
	for (int set = 0; set < NSETS; set++) {
		for (size_t i = 0; i < ARRAY_LEN(probe_states); i++) {
			uint32_t s = probe_states[i];
			bool want = in_range(s) && supported[set][s];
			expect(ferry_mig_state_supported(flag_sets[set], s) == want, set, s, s);
		}
	}
	for (size_t f = 0; f < ARRAY_LEN(bad_flag_sets); f++)
		for (size_t i = 0; i < ARRAY_LEN(probe_states); i++)
			assert_false(ferry_mig_state_supported(bad_flag_sets[f], probe_states[i]));
}

static void test_state_predicates(void **state)
{
	/* §8.1/§8.2, typed in. */
	static const bool want_saving[NSTATES] = { [SCOPY] = true, [PRE] = true, [PP2P] = true };
	static const bool want_p2p[NSTATES] = { [RP2P] = true, [PP2P] = true };
	static const bool want_running[NSTATES] = {
		[RUN] = true, [RP2P] = true, [PRE] = true, [PP2P] = true,
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(probe_states); i++) {
		uint32_t s = probe_states[i];

		if (!in_range(s)) {
			assert_false(ferry_mig_state_is_saving(s));
			assert_false(ferry_mig_state_is_p2p(s));
			assert_false(ferry_mig_state_is_running(s));
			continue;
		}
		assert_int_equal(ferry_mig_state_is_saving(s), want_saving[s]);
		assert_int_equal(ferry_mig_state_is_p2p(s), want_p2p[s]);
		assert_int_equal(ferry_mig_state_is_running(s), want_running[s]);
	}
}

/* Every flag set x every (from, to), against the §8.4 tables. */
static void test_next_state_exhaustive(void **state)
{
	(void)state;
	for (int set = 0; set < NSETS; set++) {
		for (size_t i = 0; i < ARRAY_LEN(probe_states); i++) {
			for (size_t j = 0; j < ARRAY_LEN(probe_states); j++) {
				uint32_t from = probe_states[i], to = probe_states[j];
				int want = in_range(from) && in_range(to) ? exp_next[set][from][to] : X;
				uint32_t next = 0xdeadbeef;
				int rc = ferry_mig_next_state(flag_sets[set], from, to, &next);

				if (want == X) {
					expect(rc == -EINVAL, set, from, to);
					expect(next == 0xdeadbeef, set, from, to);
				} else {
					expect(rc == 0, set, from, to);
					expect(next == (uint32_t)want, set, from, to);
				}
			}
		}
	}
}

static void test_next_state_bad_arguments(void **state)
{
	uint32_t next;

	(void)state;
	for (size_t f = 0; f < ARRAY_LEN(bad_flag_sets); f++)
		for (size_t i = 0; i < ARRAY_LEN(probe_states); i++)
			for (size_t j = 0; j < ARRAY_LEN(probe_states); j++)
				assert_int_equal(ferry_mig_next_state(bad_flag_sets[f], probe_states[i],
								      probe_states[j], &next),
						 -EINVAL);
	assert_int_equal(ferry_mig_next_state(F_SC, RUN, STOP, NULL), -EINVAL);
}

/*
 * The ERROR guard (PROTOCOL.md §8.4): STOP_COPY -> PRE_COPY(_P2P) must be
 * refused, not spin. Runs before the exhaustive tests so that a hang shows
 * this test's name as the last one started (meson's timeout turns the hang
 * into a failure).
 */
static void test_blocked_transitions(void **state)
{
	uint32_t next, path[FERRY_MIG_NUM_STATES];

	(void)state;
	assert_int_equal(ferry_mig_next_state(F_SC | F_PRE, SCOPY, PRE, &next), -EINVAL);
	assert_int_equal(ferry_mig_next_state(F_SC | F_P2P | F_PRE, SCOPY, PRE, &next), -EINVAL);
	assert_int_equal(ferry_mig_next_state(F_SC | F_P2P | F_PRE, SCOPY, PP2P, &next), -EINVAL);
	assert_int_equal(ferry_mig_path(F_SC | F_PRE, SCOPY, PRE, path), -EINVAL);
	assert_int_equal(ferry_mig_path(F_SC | F_P2P | F_PRE, SCOPY, PP2P, path), -EINVAL);
	/* ERROR is neither a way out nor a target, even as a no-op. */
	for (int set = 0; set < NSETS; set++) {
		assert_int_equal(ferry_mig_next_state(flag_sets[set], ERR, RUN, &next), -EINVAL);
		assert_int_equal(ferry_mig_next_state(flag_sets[set], RUN, ERR, &next), -EINVAL);
		assert_int_equal(ferry_mig_next_state(flag_sets[set], ERR, ERR, &next), -EINVAL);
		assert_int_equal(ferry_mig_path(flag_sets[set], ERR, ERR, path), -EINVAL);
	}
}

/* The expected paths and the expected next-step tables were typed in
 * separately; they must tell the same story (catches a typo in either). */
static void test_expected_data_agree(void **state)
{
	(void)state;
	for (int set = 0; set < NSETS; set++) {
		size_t listed = 0;

		for (uint32_t from = 0; from < NSTATES; from++) {
			for (uint32_t to = 0; to < NSTATES; to++) {
				const struct path_case *pc = find_path(set, from, to);
				int8_t want = exp_next[set][from][to];

				if (from == to || want == X) {
					expect(pc == NULL, set, from, to);
					continue;
				}
				expect(pc != NULL, set, from, to);
				listed++;
				/* Each step of the path is the table's next step. */
				uint32_t cur = from;
				for (int k = 0; k < pc->n; k++) {
					expect(exp_next[set][cur][to] == pc->steps[k], set, cur, to);
					cur = (uint32_t)pc->steps[k];
				}
				expect(cur == to, set, from, to);
			}
		}
		assert_int_equal(listed, exp_paths[set].count); /* no duplicates */
	}
}

/* Every flag set x every (from, to): the whole path, or a refusal. */
static void test_path_exhaustive(void **state)
{
	(void)state;
	for (int set = 0; set < NSETS; set++) {
		for (size_t i = 0; i < ARRAY_LEN(probe_states); i++) {
			for (size_t j = 0; j < ARRAY_LEN(probe_states); j++) {
				uint32_t from = probe_states[i], to = probe_states[j];
				uint32_t path[FERRY_MIG_NUM_STATES];
				const struct path_case *pc = find_path(set, from, to);
				bool noop = from == to && in_range(from) && supported[set][from];
				int rc;

				for (int k = 0; k < FERRY_MIG_NUM_STATES; k++)
					path[k] = 0xdeadbeef;
				rc = ferry_mig_path(flag_sets[set], from, to, path);
				if (noop) {
					expect(rc == 0, set, from, to);
				} else if (!pc) {
					expect(rc == -EINVAL, set, from, to);
				} else {
					expect(rc == pc->n, set, from, to);
					for (int k = 0; k < pc->n; k++)
						expect(path[k] == (uint32_t)pc->steps[k], set, from, to);
				}
				/* Nothing written past the answer (all of it on error). */
				for (int k = rc > 0 ? rc : 0; k < FERRY_MIG_NUM_STATES; k++)
					expect(path[k] == 0xdeadbeef, set, from, to);
				/* NULL path: same answer, count only. */
				expect(ferry_mig_path(flag_sets[set], from, to, NULL) == rc, set, from, to);
			}
		}
	}
	for (size_t f = 0; f < ARRAY_LEN(bad_flag_sets); f++)
		assert_int_equal(ferry_mig_path(bad_flag_sets[f], STOP, RUN, NULL), -EINVAL);
}

/* ferry_mig_is_direct_arc() is exactly the §8.3 list, and the direct arcs
 * are exactly the one-step transitions. */
static void test_direct_arcs(void **state)
{
	(void)state;
	for (int set = 0; set < NSETS; set++) {
		for (size_t i = 0; i < ARRAY_LEN(probe_states); i++) {
			for (size_t j = 0; j < ARRAY_LEN(probe_states); j++) {
				uint32_t from = probe_states[i], to = probe_states[j];
				bool want = arc_listed(set, from, to);

				expect(ferry_mig_is_direct_arc(flag_sets[set], from, to) == want,
				       set, from, to);
				if (want) /* asking for a direct arc's end takes that arc */
					expect(ferry_mig_path(flag_sets[set], from, to, NULL) == 1,
					       set, from, to);
			}
		}
	}
	for (size_t f = 0; f < ARRAY_LEN(bad_flag_sets); f++)
		for (uint32_t from = 0; from < NSTATES; from++)
			for (uint32_t to = 0; to < NSTATES; to++)
				assert_false(ferry_mig_is_direct_arc(bad_flag_sets[f], from, to));
}

/* Calls fn(set, from, path, n) for every non-empty path the code produces. */
typedef void (*path_fn)(int set, uint32_t from, const uint32_t *path, int n);
static void for_each_path(path_fn fn)
{
	for (int set = 0; set < NSETS; set++) {
		for (uint32_t from = 0; from < NSTATES; from++) {
			for (uint32_t to = 0; to < NSTATES; to++) {
				uint32_t path[FERRY_MIG_NUM_STATES];
				int n = ferry_mig_path(flag_sets[set], from, to, path);

				if (n > 0)
					fn(set, from, path, n);
			}
		}
	}
}

static void check_steps_are_arcs(int set, uint32_t from, const uint32_t *path, int n)
{
	uint32_t cur = from;

	for (int k = 0; k < n; k++) {
		expect(arc_listed(set, cur, path[k]), set, cur, path[k]);
		cur = path[k];
	}
}

/* Every step of every path is a §8.3 direct arc for that flag set. */
static void test_path_steps_are_direct_arcs(void **state)
{
	(void)state;
	for_each_path(check_steps_are_arcs);
}

/*
 * The saving-group rule (UAPI, PROTOCOL.md §8.4): no saving-group state in
 * the interior of a path, except a path that stays inside the group from
 * start to end (PRE_COPY -> PRE_COPY_P2P -> STOP_COPY: one session); and a
 * path that leaves the group never re-enters it (no second session).
 */
static bool path_admissible(uint32_t from, const uint32_t *path, int n)
{
	bool all_saving = saving(from), left = false;
	uint32_t cur = from;

	for (int k = 0; k < n; k++)
		all_saving = all_saving && saving(path[k]);
	for (int k = 0; k < n; k++) {
		if (k < n - 1 && saving(path[k]) && !all_saving)
			return false; /* passes through the group */
		if (saving(cur) && !saving(path[k]))
			left = true;
		else if (!saving(cur) && saving(path[k]) && left)
			return false; /* re-enters the group */
		cur = path[k];
	}
	return true;
}

static void check_saving_rule(int set, uint32_t from, const uint32_t *path, int n)
{
	expect(path_admissible(from, path, n), set, from, path[n - 1]);
	for (int k = 0; k < n; k++)
		expect(path[k] < NSTATES && supported[set][path[k]], set, from, path[k]);
}

static void test_path_saving_group_rule(void **state)
{
	(void)state;
	for_each_path(check_saving_rule);
}

/*
 * Length of the shortest admissible path over the §8.3 arcs, or -1. Walks
 * every simple path (at most 7 states, so a few thousand walks): simple on
 * purpose, no cleverness to get wrong in the oracle.
 */
static int shortest_walk(int set, uint32_t to, uint32_t *walk, int n, uint32_t from)
{
	uint32_t cur = n ? walk[n - 1] : from;
	int best = -1;

	if (n && cur == to)
		return path_admissible(from, walk, n) ? n : -1;
	if (n >= NSTATES - 1)
		return -1;
	for (uint32_t next = 0; next < NSTATES; next++) {
		bool seen = next == from;

		for (int k = 0; k < n; k++)
			seen = seen || walk[k] == next;
		if (seen || !arc_listed(set, cur, next))
			continue;
		walk[n] = next;
		int len = shortest_walk(set, to, walk, n + 1, from);
		if (len > 0 && (best < 0 || len < best))
			best = len;
	}
	return best;
}

/* Paths are shortest among admissible ones; refused iff none exists. */
static void test_paths_shortest(void **state)
{
	(void)state;
	for (int set = 0; set < NSETS; set++) {
		for (uint32_t from = 0; from < NSTATES; from++) {
			for (uint32_t to = 0; to < NSTATES; to++) {
				uint32_t walk[NSTATES];
				int n = ferry_mig_path(flag_sets[set], from, to, NULL);
				int best;

				if (from == to || !supported[set][from] || !supported[set][to])
					continue; /* covered by test_path_exhaustive */
				best = shortest_walk(set, to, walk, 0, from);
				if (best < 0)
					expect(n == -EINVAL, set, from, to);
				else
					expect(n == best, set, from, to);
			}
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_values),
		cmocka_unit_test(test_state_names),
		cmocka_unit_test(test_state_name_round_trip),
		cmocka_unit_test(test_flags_valid),
		cmocka_unit_test(test_state_supported),
		cmocka_unit_test(test_state_predicates),
		cmocka_unit_test(test_blocked_transitions),
		cmocka_unit_test(test_next_state_exhaustive),
		cmocka_unit_test(test_next_state_bad_arguments),
		cmocka_unit_test(test_expected_data_agree),
		cmocka_unit_test(test_path_exhaustive),
		cmocka_unit_test(test_direct_arcs),
		cmocka_unit_test(test_path_steps_are_direct_arcs),
		cmocka_unit_test(test_path_saving_group_rule),
		cmocka_unit_test(test_paths_shortest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
