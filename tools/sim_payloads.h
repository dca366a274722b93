/*
 * sim_payloads.h - JSON payloads of simulated city sensors for civicmq-sim, modelled on the
 * FIWARE Smart Data Models that config/policy.json expects (AirQualityObserved,
 * NoiseLevelObserved, CrowdFlowObserved, ParkingSpot, AnprFlowObserved, a smart meter
 * reading and a people-counting camera). With canaries on, every payload also carries
 * realistic personal data (e-mail addresses, phone numbers, MAC addresses, licence plates,
 * resident ids) so that a test can check none of it leaves the scrubber.
 *
 * Deterministic for a given seed apart from dateObserved (the wall clock). No allocation;
 * one thread (the simulator's main thread).
 */
#ifndef CMQ_SIM_PAYLOADS_H
#define CMQ_SIM_PAYLOADS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cmq_sim_kind {
	CMQ_SIM_AIR,
	CMQ_SIM_NOISE,
	CMQ_SIM_FOOTFALL,
	CMQ_SIM_PARKING,
	CMQ_SIM_ANPR,
	CMQ_SIM_METER,
	CMQ_SIM_CAMERA,
	CMQ_SIM_KIND_COUNT
};

struct cmq_sim_gen {
	enum cmq_sim_kind kind;
	const char *device;   /* borrowed; [A-Za-z0-9._-] only (cmq_sim_name_ok) */
	const char *district; /* borrowed; the same characters */
	const char *resident; /* borrowed; meter only; NULL = derived from the device id */
	bool canaries;        /* plant personal data */
	uint64_t rng;         /* xorshift64 state; never 0 */
	unsigned long seq;    /* messages made so far */
};

/* Set up g (device, district, resident borrowed; they must outlive g). */
void cmq_sim_gen_init(struct cmq_sim_gen *g, enum cmq_sim_kind kind, const char *device,
                      const char *district, const char *resident, bool canaries, uint64_t seed);

/* Kind by name ("air", "noise", ...): 0 and *out set, or -1 (*out = CMQ_SIM_AIR). */
int cmq_sim_kind_parse(const char *name, enum cmq_sim_kind *out);
const char *cmq_sim_kind_name(enum cmq_sim_kind kind);
/* The valid names, "air|noise|...", for usage and error messages. */
const char *cmq_sim_kind_names(void);

/* True if s is non-empty, at most 64 bytes, and only [A-Za-z0-9._-] (safe in a topic level
 * and in a JSON string without escaping). */
bool cmq_sim_name_ok(const char *s);

/*
 * Write the next payload (NUL-terminated JSON) into buf. Returns its length, or -1 if it
 * does not fit in n bytes (buf then holds a truncated string that must not be sent).
 */
int cmq_sim_payload(struct cmq_sim_gen *g, char *buf, size_t n);

#endif
