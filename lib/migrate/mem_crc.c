/*
 * Guest memory checksums for the CHECKSUMS section (CRC-32 over all of
 * guest memory), and the hole map they and round 1 use.
 *
 * Holes. Guest memory is a memfd; pages never written are holes, and
 * reading one through the mapping makes the kernel allocate it (a CRC over
 * a fresh 256 MiB memfd took 6.8 s on the 2-vCPU test VM, over the same
 * memory once written 0.27 s). With the fd, SEEK_DATA / SEEK_HOLE find the
 * holes; a hole's CRC is the CRC of that many zero bytes, built from
 * precomputed powers of two with crc32_combine() in a few microseconds.
 *
 * Where the time goes. The source overlaps its CRC with the stop-copy
 * transfer (a thread started once memory is frozen). The destination keeps
 * a CRC per 2 MiB chunk, refreshed after each pre-copy round for the chunks
 * that round loaded, so only the stop-copy part's chunks are left for the
 * downtime. Chunk CRCs combine into the CRC of the whole, which is what the
 * source computed in one pass.
 */
#include "migrate/engine_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "util/crc32.h"
#include "util/log.h"

/* ---- CRC of runs of zero bytes ---- */

#define ZERO_POWERS 48 /* up to 2^47 bytes */
static uint32_t zero_crc_pow[ZERO_POWERS]; /* CRC of 2^i zero bytes */
static pthread_once_t zero_once = PTHREAD_ONCE_INIT;

static void zero_init(void)
{
	static const uint8_t zero;

	zero_crc_pow[0] = ferry_crc32(0, &zero, 1);
	for (unsigned i = 1; i < ZERO_POWERS; i++)
		zero_crc_pow[i] = (uint32_t)crc32_combine(zero_crc_pow[i - 1], zero_crc_pow[i - 1],
							  (z_off_t)(1ull << (i - 1)));
}

/* @crc extended by @len zero bytes. */
static uint32_t crc_zeros(uint32_t crc, uint64_t len)
{
	pthread_once(&zero_once, zero_init);
	for (unsigned i = ZERO_POWERS; i-- > 0;) {
		if (len & (1ull << i))
			crc = (uint32_t)crc32_combine(crc, zero_crc_pow[i], (z_off_t)(1ull << i));
	}
	return crc;
}

/* ---- holes ---- */

int mem_next_data(int fd, uint64_t pos, uint64_t end, uint64_t *data, uint64_t *data_end)
{
	off_t d, h;

	if (fd < 0) {
		*data = pos;
		*data_end = end;
		return 0;
	}
	d = lseek(fd, (off_t)pos, SEEK_DATA);
	if (d < 0) {
		if (errno == ENXIO) { /* only a hole up to the end of the file */
			*data = *data_end = end;
			return 0;
		}
		return -errno;
	}
	if ((uint64_t)d >= end) {
		*data = *data_end = end;
		return 0;
	}
	/* SEEK_HOLE scans to the next hole, all of a full file (10 ms per GiB
	 * here); a file with every block allocated (preallocated guest
	 * memory) has none, and fstat says so at once. */
	struct stat st;

	if (fstat(fd, &st) == 0 && (uint64_t)st.st_blocks * 512 >= (uint64_t)st.st_size) {
		*data = (uint64_t)d;
		*data_end = end;
		return 0;
	}
	h = lseek(fd, d, SEEK_HOLE);
	if (h < 0)
		return -errno;
	*data = (uint64_t)d;
	*data_end = (uint64_t)h < end ? (uint64_t)h : end;
	return 0;
}

bool mem_fd_usable(int fd, uint64_t size)
{
	struct stat st;

	/* A regular file (a memfd is one) at least as large as guest memory:
	 * not a zero-initialised config's fd 0, a pipe or a device. SEEK_DATA
	 * alone tells whether the file system answers: a SEEK_HOLE here would
	 * scan all of full memory (about 10 ms per GiB on the build VM). */
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < size)
		return false;
	if (lseek(fd, 0, SEEK_DATA) < 0 && errno != ENXIO) {
		log_info("migration: guest memory fd %d does not tell holes (SEEK_DATA): every "
			 "page is read", fd);
		return false;
	}
	return true;
}

/*
 * Walks the data extents of a memory fd in increasing order. SEEK_HOLE
 * scans from its offset to the next hole however far that is, so asking
 * per 2 MiB chunk made a refresh of full memory quadratic (13% of the
 * destination's CPU in a 1 GiB migration); the cursor asks once per extent.
 */
struct extent_cursor {
	int fd;
	uint64_t size;
	bool is_valid;
	uint64_t from, data, data_end; /* [from, data) hole, [data, data_end) data */
};

static void cursor_init(struct extent_cursor *cur, int fd, uint64_t size)
{
	*cur = (struct extent_cursor){.fd = fd, .size = size};
}

static void cursor_seek(struct extent_cursor *cur, uint64_t pos)
{
	uint64_t d, e;

	if (cur->is_valid && pos >= cur->from && pos < cur->data_end)
		return;
	if (mem_next_data(cur->fd, pos, cur->size, &d, &e) < 0) {
		d = pos; /* cannot tell: read everything from here */
		e = cur->size;
	}
	cur->from = pos;
	cur->data = d;
	cur->data_end = d == e ? cur->size : e; /* d == e: holes to the end */
	cur->is_valid = true;
}

/* CRC-32 of [off, off + len) of memory at @base, holes as zeros. */
static uint32_t crc_range(uint32_t crc, const uint8_t *base, struct extent_cursor *cur,
			  uint64_t off, uint64_t len)
{
	uint64_t pos = off, end = off + len;

	while (pos < end) {
		uint64_t stop;

		cursor_seek(cur, pos);
		stop = cur->data > pos ? (cur->data < end ? cur->data : end) : pos;
		crc = crc_zeros(crc, stop - pos);
		pos = stop;
		if (pos >= end)
			break;
		stop = cur->data_end < end ? cur->data_end : end;
		crc = ferry_crc32(crc, base + pos, stop - pos);
		pos = stop;
	}
	return crc;
}

uint32_t mem_crc(const uint8_t *p, int fd, uint64_t len)
{
	struct extent_cursor cur;

	cursor_init(&cur, fd, len);
	return crc_range(0, p, &cur, 0, len);
}

/* ---- per-chunk cache (destination) ---- */

static uint64_t chunk_len(const struct mem_crc_cache *cc, uint64_t c)
{
	uint64_t off = c * cc->chunk;

	return cc->size - off < cc->chunk ? cc->size - off : cc->chunk;
}

int mem_crc_cache_init(struct mem_crc_cache *cc, const uint8_t *base, int fd, uint64_t size,
		       uint64_t chunk, bool is_zero)
{
	memset(cc, 0, sizeof(*cc));
	if (!chunk || !size)
		return -EINVAL;
	cc->base = base;
	cc->fd = fd;
	cc->size = size;
	cc->chunk = chunk;
	cc->nchunks = (size + chunk - 1) / chunk;
	cc->crc = calloc(cc->nchunks, sizeof(*cc->crc));
	cc->is_stale = malloc(cc->nchunks);
	if (!cc->crc || !cc->is_stale) {
		log_err("migration: no memory for %llu chunk checksums",
			(unsigned long long)cc->nchunks);
		mem_crc_cache_fini(cc);
		return -ENOMEM;
	}
	if (is_zero) {
		for (uint64_t c = 0; c < cc->nchunks; c++)
			cc->crc[c] = crc_zeros(0, chunk_len(cc, c));
		memset(cc->is_stale, 0, cc->nchunks);
		cc->nstale = 0;
	} else {
		memset(cc->is_stale, 1, cc->nchunks); /* nothing computed yet */
		cc->nstale = cc->nchunks;
	}
	return 0;
}

void mem_crc_cache_fini(struct mem_crc_cache *cc)
{
	free(cc->crc);
	free(cc->is_stale);
	cc->crc = NULL;
	cc->is_stale = NULL;
}

void mem_crc_cache_stale(struct mem_crc_cache *cc, uint64_t off, uint64_t len)
{
	if (!len || off >= cc->size)
		return;
	if (len > cc->size - off)
		len = cc->size - off;
	for (uint64_t c = off / cc->chunk; c <= (off + len - 1) / cc->chunk; c++) {
		if (!cc->is_stale[c]) {
			cc->is_stale[c] = 1;
			cc->nstale++;
		}
	}
}

void mem_crc_cache_refresh(struct mem_crc_cache *cc)
{
	struct extent_cursor cur;

	cursor_init(&cur, cc->fd, cc->size); /* holes are filled between refreshes */
	for (uint64_t c = 0; cc->nstale && c < cc->nchunks; c++) {
		if (!cc->is_stale[c])
			continue;
		cc->crc[c] = crc_range(0, cc->base, &cur, c * cc->chunk, chunk_len(cc, c));
		cc->is_stale[c] = 0;
		cc->nstale--;
	}
}

uint32_t mem_crc_cache_value(struct mem_crc_cache *cc)
{
	uint32_t crc;

	mem_crc_cache_refresh(cc);
	crc = cc->crc[0];
	for (uint64_t c = 1; c < cc->nchunks; c++)
		crc = (uint32_t)crc32_combine(crc, cc->crc[c], (z_off_t)chunk_len(cc, c));
	return crc;
}

/* ---- asynchronous (source) ---- */

static uint64_t piece_len(const struct mem_crc_job *j, uint64_t k)
{
	uint64_t off = k * MEM_CRC_JOB_PIECE;

	return j->len - off < MEM_CRC_JOB_PIECE ? j->len - off : MEM_CRC_JOB_PIECE;
}

/* Claims and checksums pieces until none is left; each worker walks the
 * holes with its own cursor. */
static void job_work(struct mem_crc_job *j)
{
	struct extent_cursor cur;
	uint64_t k;

	cursor_init(&cur, j->fd, j->len);
	while ((k = atomic_fetch_add(&j->next, 1)) < j->npieces)
		j->piece_crc[k] = crc_range(0, j->p, &cur, k * MEM_CRC_JOB_PIECE, piece_len(j, k));
}

static void *job_main(void *arg)
{
	job_work(arg);
	return NULL;
}

int mem_crc_job_start(struct mem_crc_job *j, const uint8_t *p, int fd, uint64_t len)
{
	int rc;

	memset(j, 0, sizeof(*j));
	j->p = p;
	j->fd = fd;
	j->len = len;
	j->npieces = (len + MEM_CRC_JOB_PIECE - 1) / MEM_CRC_JOB_PIECE;
	atomic_init(&j->next, 0);
	j->piece_crc = calloc(j->npieces ? j->npieces : 1, sizeof(*j->piece_crc));
	if (!j->piece_crc) {
		log_warn("migration: no memory for the memory checksum's pieces: computing it "
			 "at the end in one pass");
		return -ENOMEM;
	}
	rc = pthread_create(&j->thread, NULL, job_main, j);
	if (rc) {
		log_warn("migration: no thread for the memory checksum (%s): computing it at the end",
			 strerror(rc));
		return -rc;
	}
	j->is_started = true;
	return 0;
}

uint32_t mem_crc_job_finish(struct mem_crc_job *j)
{
	if (!j->piece_crc) {
		j->crc = mem_crc(j->p, j->fd, j->len);
		return j->crc;
	}
	job_work(j); /* whatever pieces the thread has not claimed yet */
	if (j->is_started)
		pthread_join(j->thread, NULL);
	j->is_started = false;
	j->crc = j->npieces ? j->piece_crc[0] : 0;
	for (uint64_t k = 1; k < j->npieces; k++)
		j->crc = (uint32_t)crc32_combine(j->crc, j->piece_crc[k], (z_off_t)piece_len(j, k));
	free(j->piece_crc);
	j->piece_crc = NULL;
	return j->crc;
}
