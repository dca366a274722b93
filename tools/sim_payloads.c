/*
 * sim_payloads.c - see sim_payloads.h. Each kind is one function appending its fields to a
 * bounded buffer; an overflow is remembered and reported once at the end, so the builders
 * stay free of error handling. Values wander with a seeded xorshift64 so that runs with the
 * same --seed differ only in their timestamps.
 */
#include "sim_payloads.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct out {
	char *p;
	size_t n;
	size_t len;
	bool overflow;
};

static const char *const kind_names[CMQ_SIM_KIND_COUNT] = {
    "air", "noise", "footfall", "parking", "anpr", "meter", "camera",
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int w;

	if (o->overflow)
		return;
	va_start(ap, fmt);
	w = vsnprintf(o->p + o->len, o->n - o->len, fmt, ap);
	va_end(ap);
	if (w < 0 || (size_t)w >= o->n - o->len) {
		o->overflow = true;
		return;
	}
	o->len += (size_t)w;
}

static uint64_t next(struct cmq_sim_gen *g)
{
	uint64_t x = g->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	g->rng = x;
	return x;
}

/* Uniform in [lo, hi). */
static double uniform(struct cmq_sim_gen *g, double lo, double hi)
{
	return lo + (hi - lo) * (double)(next(g) >> 11) / 9007199254740992.0;
}

static unsigned pick(struct cmq_sim_gen *g, unsigned n)
{
	return (unsigned)(next(g) % n);
}

void cmq_sim_gen_init(struct cmq_sim_gen *g, enum cmq_sim_kind kind, const char *device,
                      const char *district, const char *resident, bool canaries, uint64_t seed)
{
	memset(g, 0, sizeof(*g));
	g->kind = kind;
	g->device = device;
	g->district = district;
	g->resident = resident;
	g->canaries = canaries;
	g->rng = seed ^ 0x9E3779B97F4A7C15ull;
	if (g->rng == 0)
		g->rng = 0x2545F4914F6CDD1Dull;
}

int cmq_sim_kind_parse(const char *name, enum cmq_sim_kind *out)
{
	*out = CMQ_SIM_AIR;
	for (int k = 0; k < CMQ_SIM_KIND_COUNT; k++) {
		if (strcmp(name, kind_names[k]) == 0) {
			*out = (enum cmq_sim_kind)k;
			return 0;
		}
	}
	return -1;
}

const char *cmq_sim_kind_name(enum cmq_sim_kind kind)
{
	return (unsigned)kind < CMQ_SIM_KIND_COUNT ? kind_names[kind] : "?";
}

const char *cmq_sim_kind_names(void)
{
	return "air|noise|footfall|parking|anpr|meter|camera";
}

bool cmq_sim_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* "2026-11-28T10:15:42.123Z" from the wall clock. */
static void iso_now(char *buf, size_t n)
{
	struct timespec ts;
	struct tm tm;

	char date[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	if (strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		date[0] = '\0';
	snprintf(buf, n, "%s.%03dZ", date, (int)(ts.tv_nsec / 1000000L) % 1000);
}

/* The common head: id, type, dateObserved, an exact GeoJSON point, refDevice. */
static void head(struct cmq_sim_gen *g, struct out *o, const char *type)
{
	char when[40];
	/* A fixed spot per device (from its name) with a little jitter: street furniture. */
	unsigned h = 2166136261u;

	for (const char *p = g->device; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	iso_now(when, sizeof(when));
	put(o,
	    "{\"id\":\"urn:ngsi-ld:%s:%s:%lu\",\"type\":\"%s\",\"dateObserved\":\"%s\","
	    "\"location\":{\"type\":\"Point\",\"coordinates\":[%.7f,%.7f]},"
	    "\"refDevice\":\"urn:ngsi-ld:Device:%s\",\"areaServed\":\"%s\"",
	    type, g->device, g->seq, type, when,
	    -0.1276 + (h % 1000) / 20000.0 + uniform(g, 0, 1e-5),
	    51.5072 + (h / 1000 % 1000) / 20000.0 + uniform(g, 0, 1e-5), g->device, g->district);
}

static void mac(struct cmq_sim_gen *g, char *buf, size_t n)
{
	snprintf(buf, n, "%02X:%02X:%02X:%02X:%02X:%02X", 0x3C, 0x22, 0xFB, pick(g, 256),
	         pick(g, 256), pick(g, 256));
}

static void plate(struct cmq_sim_gen *g, char *buf, size_t n)
{
	static const char letters[] = "ABCDEFGHJKLMNOPRSTUVWXY";
	unsigned l = (unsigned)sizeof(letters) - 1;

	snprintf(buf, n, "%c%c%02u %c%c%c", letters[pick(g, l)], letters[pick(g, l)],
	         pick(g, 30) + 51, letters[pick(g, l)], letters[pick(g, l)], letters[pick(g, l)]);
}

/* Personal data a careless vendor puts in free text and extra fields. */
static void canaries(struct cmq_sim_gen *g, struct out *o)
{
	char m[24];

	mac(g, m, sizeof(m));
	put(o,
	    ",\"installedBy\":\"jane.doe%u@example.org\",\"contactPhone\":\"+44 7700 900%03u\","
	    "\"gatewayMac\":\"%s\"",
	    pick(g, 100), pick(g, 1000), m);
	/* A meter already names its resident; a second residentId key would be invalid JSON. */
	if (g->kind != CMQ_SIM_METER)
		put(o, ",\"residentId\":\"RES-%06u\"", pick(g, 1000000));
}

static void air(struct cmq_sim_gen *g, struct out *o)
{
	head(g, o, "AirQualityObserved");
	put(o,
	    ",\"no2\":%.1f,\"pm10\":%.1f,\"pm25\":%.1f,\"o3\":%.1f,\"airQualityIndex\":%u,"
	    "\"temperature\":%.1f,\"relativeHumidity\":%.2f,\"reliability\":0.9,"
	    "\"firmware\":\"civ-aq 3.2.1\",\"batteryLevel\":%.2f",
	    uniform(g, 10, 80), uniform(g, 5, 60), uniform(g, 2, 35), uniform(g, 20, 120),
	    1 + pick(g, 10), uniform(g, -5, 32), uniform(g, 0.3, 0.95), uniform(g, 0.2, 1));
}

static void noise(struct cmq_sim_gen *g, struct out *o)
{
	double laeq = uniform(g, 40, 75);

	head(g, o, "NoiseLevelObserved");
	put(o, ",\"LAeq\":%.1f,\"LAmax\":%.1f,\"LA90\":%.1f,\"sonometerClass\":\"1\"", laeq,
	    laeq + uniform(g, 3, 20), laeq - uniform(g, 3, 10));
}

static void footfall(struct cmq_sim_gen *g, struct out *o)
{
	char m[3][24];

	for (int i = 0; i < 3; i++)
		mac(g, m[i], sizeof(m[i]));
	head(g, o, "CrowdFlowObserved");
	put(o,
	    ",\"peopleCount\":%u,\"direction\":\"inbound\",\"macs\":[\"%s\",\"%s\",\"%s\"],"
	    "\"notes\":\"strongest probes from %s and %s\"",
	    pick(g, 400), m[0], m[1], m[2], m[0], m[1]);
}

static void parking(struct cmq_sim_gen *g, struct out *o)
{
	static const char *const status[] = {"free", "occupied", "closed"};

	head(g, o, "ParkingSpot");
	put(o, ",\"status\":\"%s\",\"category\":[\"onStreet\"],\"width\":2.4,\"length\":5.0",
	    status[pick(g, 3)]);
}

static void anpr(struct cmq_sim_gen *g, struct out *o)
{
	char p[16];

	plate(g, p, sizeof(p));
	head(g, o, "AnprFlowObserved");
	put(o,
	    ",\"observedVehicle\":{\"licensePlate\":{\"identifier\":\"%s\",\"country\":\"GB\"},"
	    "\"direction\":\"%s\",\"vehicleType\":\"car\",\"colour\":\"silver\"},"
	    "\"vehiclePlateNotRead\":false,\"refImages\":[\"https://anpr.example/img/%s/%lu.jpg\"],"
	    "\"notes\":\"plate %s seen entering the zone\"",
	    p, pick(g, 2) ? "inbound" : "outbound", g->device, g->seq, p);
}

static void meter(struct cmq_sim_gen *g, struct out *o)
{
	char when[40];

	iso_now(when, sizeof(when));
	put(o,
	    "{\"id\":\"urn:ngsi-ld:EnergyReading:%s:%lu\",\"type\":\"EnergyReading\","
	    "\"dateObserved\":\"%s\",\"meterId\":\"MTR-%s\",\"residentId\":\"%s%s\","
	    "\"activePower\":%.1f,\"totalActiveEnergyImport\":%.3f",
	    g->device, g->seq, when, g->device, g->resident != NULL ? "" : "RES-",
	    g->resident != NULL ? g->resident : g->device, uniform(g, 80, 4500),
	    uniform(g, 1000, 9000));
}

static void camera(struct cmq_sim_gen *g, struct out *o)
{
	char when[40];

	iso_now(when, sizeof(when));
	put(o,
	    "{\"id\":\"urn:ngsi-ld:PeopleCount:%s:%lu\",\"type\":\"PeopleCount\","
	    "\"dateObserved\":\"%s\",\"zone\":\"%s-square-%u\",\"peopleCount\":%u",
	    g->device, g->seq, when, g->district, 1 + pick(g, 3), pick(g, 60));
}

int cmq_sim_payload(struct cmq_sim_gen *g, char *buf, size_t n)
{
	struct out o = {buf, n, 0, false};

	if (n == 0)
		return -1;
	buf[0] = '\0';
	switch (g->kind) {
	case CMQ_SIM_AIR:
		air(g, &o);
		break;
	case CMQ_SIM_NOISE:
		noise(g, &o);
		break;
	case CMQ_SIM_FOOTFALL:
		footfall(g, &o);
		break;
	case CMQ_SIM_PARKING:
		parking(g, &o);
		break;
	case CMQ_SIM_ANPR:
		anpr(g, &o);
		break;
	case CMQ_SIM_METER:
		meter(g, &o);
		break;
	case CMQ_SIM_CAMERA:
	default:
		camera(g, &o);
		break;
	}
	if (g->canaries)
		canaries(g, &o);
	put(&o, "}");
	g->seq++;
	return o.overflow ? -1 : (int)o.len;
}
