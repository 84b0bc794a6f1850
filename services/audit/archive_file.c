/*
 * archive_file.c - the offline check of a retention archive (chain.h): the
 * JSON Lines of the auditor's export for one whole partition, re-hashed from
 * the file alone and tied to the chain around it and to the signed checkpoints.
 */
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "hex.h"

static void
archive_bad(chain_archive_check_t *c, const char *reason)
{
    c->bad_line = c->lines;
    snprintf(c->reason, sizeof(c->reason), "%s", reason);
}

/* |key| of |o|, or of its member object |outer|, as a string; NULL when absent or null. */
static const char *
archive_str(json_object *o, const char *outer, const char *key)
{
    json_object *v = NULL;

    if (outer != NULL && !json_object_object_get_ex(o, outer, &o)) {
        return NULL;
    }
    if (o == NULL || !json_object_object_get_ex(o, key, &v) || v == NULL ||
        !json_object_is_type(v, json_type_string)) {
        return NULL;
    }
    return json_object_get_string(v);
}

static int
archive_seq(json_object *o, int64_t *seq)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(o, "seq", &v) || !json_object_is_type(v, json_type_int)) {
        return -1;
    }
    *seq = json_object_get_int64(v);
    return 0;
}

/* One event line: its hash recomputed and linked to the previous one. 0 or -1 (recorded). */
static int
archive_event(chain_archive_check_t *c, json_object *o, unsigned char *prev, int *have_prev)
{
    chain_event_t ev = {
        .event_id = archive_str(o, NULL, "event_id"),
        .actor_account_id = archive_str(o, "actor", "account_id"),
        .actor_kind = archive_str(o, "actor", "kind"),
        .actor_org_id = archive_str(o, "actor", "org_id"),
        .actor_role = archive_str(o, "actor", "role"),
        .actor_session_id = archive_str(o, "actor", "session_id"),
        .actor_ip = archive_str(o, "actor", "ip"),
        .actor_user_agent = archive_str(o, "actor", "user_agent"),
        .action = archive_str(o, NULL, "action"),
        .target_type = archive_str(o, "target", "type"),
        .target_id = archive_str(o, "target", "id"),
        .target_patient_id = archive_str(o, "target", "patient_id"),
        .target_org_id = archive_str(o, "target", "org_id"),
        .result = archive_str(o, "outcome", "result"),
        .reason = archive_str(o, "outcome", "reason"),
        .source_service = archive_str(o, "source", "service"),
        .request_id = archive_str(o, "source", "request_id"),
        .details = archive_str(o, NULL, "details_text"),
    };
    unsigned char line_prev[CHAIN_HASH_LEN], stored[CHAIN_HASH_LEN], calc[CHAIN_HASH_LEN];
    int64_t want = c->events_seen == 0 ? c->from_seq : c->last_seq + 1;

    if (archive_seq(o, &ev.seq) != 0 || ev.event_id == NULL ||
        chain_parse_jst(archive_str(o, NULL, "occurred_at"), &ev.occurred_us) != 0 ||
        chain_parse_jst(archive_str(o, NULL, "recorded_at"), &ev.recorded_us) != 0 ||
        hex_decode(archive_str(o, NULL, "prev_hash"), line_prev, CHAIN_HASH_LEN) != 0 ||
        hex_decode(archive_str(o, NULL, "hash"), stored, CHAIN_HASH_LEN) != 0) {
        archive_bad(c, "malformed_event");
        return -1;
    }
    if (ev.seq != want) {
        archive_bad(c, ev.seq < want ? "duplicate_seq" : "seq_gap");
        return -1;
    }
    if (!*have_prev) {
        memcpy(prev, line_prev, CHAIN_HASH_LEN); /* nothing known before the archive */
        *have_prev = 1;
    }
    if (c->events_seen == 0) {
        memcpy(c->first_prev, line_prev, CHAIN_HASH_LEN);
    }
    if (CRYPTO_memcmp(line_prev, prev, CHAIN_HASH_LEN) != 0) {
        archive_bad(c, "prev_hash_mismatch");
        return -1;
    }
    if (chain_hash(&ev, line_prev, calc) != 0) {
        archive_bad(c, "internal_error");
        return -1;
    }
    if (CRYPTO_memcmp(calc, stored, CHAIN_HASH_LEN) != 0) {
        archive_bad(c, "hash_mismatch");
        return -1;
    }
    memcpy(prev, calc, CHAIN_HASH_LEN);
    c->last_seq = ev.seq;
    c->events_seen++;
    return 0;
}

/* A checkpoint line: it follows its event, signs its hash, and the signature holds. */
static int
archive_checkpoint(chain_archive_check_t *c, json_object *o, const unsigned char *prev)
{
    unsigned char hash[CHAIN_HASH_LEN], sig[96];
    const char *b64 = archive_str(o, NULL, "signature");
    int64_t seq = 0, at = 0;

    if (archive_seq(o, &seq) != 0 || hex_decode(archive_str(o, NULL, "hash"), hash, 32) != 0 ||
        chain_parse_jst(archive_str(o, NULL, "signed_at"), &at) != 0 || b64 == NULL ||
        strlen(b64) != 88 || EVP_DecodeBlock(sig, (const unsigned char *)b64, 88) != 66) {
        archive_bad(c, "malformed_checkpoint");
        return -1;
    }
    if (c->events_seen == 0 || seq != c->last_seq ||
        CRYPTO_memcmp(hash, prev, CHAIN_HASH_LEN) != 0) {
        archive_bad(c, "checkpoint_mismatch");
        return -1;
    }
    if (!chain_checkpoint_check(c->pub, seq, hash, at, sig, CHAIN_SIG_LEN)) {
        archive_bad(c, "bad_signature");
        return -1;
    }
    c->checkpoints++;
    c->last_ckpt_seq = seq;
    return 0;
}

static int
archive_line(chain_archive_check_t *c, char *line, unsigned char *prev, int *have_prev)
{
    size_t len = strlen(line);
    json_object *o;
    int rc;

    if (len > 0 && line[len - 1] == '\n') {
        line[--len] = '\0';
    }
    if ((o = json_tokener_parse(line)) == NULL || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        archive_bad(c, "malformed_line");
        return -1;
    }
    const char *record = archive_str(o, NULL, "record");
    if (record != NULL && strcmp(record, "event") == 0) {
        rc = archive_event(c, o, prev, have_prev);
    } else if (record != NULL && strcmp(record, "checkpoint") == 0) {
        rc = archive_checkpoint(c, o, prev);
    } else {
        archive_bad(c, "unexpected_record");
        rc = -1;
    }
    json_object_put(o);
    return rc;
}

int
chain_archive_check(const char *path, chain_archive_check_t *c)
{
    unsigned char prev[CHAIN_HASH_LEN];
    int have_prev = c->prev != NULL, rc = 0;
    unsigned int mdlen = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    FILE *f = fopen(path, "r");
    EVP_MD_CTX *md = EVP_MD_CTX_new();

    c->lines = c->events_seen = c->checkpoints = c->last_seq = c->last_ckpt_seq = 0;
    c->bad_line = 0;
    c->reason[0] = '\0';
    if (have_prev) {
        memcpy(prev, c->prev, CHAIN_HASH_LEN);
    }
    if (f == NULL || md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        archive_bad(c, "unreadable");
        rc = -1;
    }
    while (rc == 0 && (n = getline(&line, &cap, f)) > 0) {
        c->lines++;
        if (EVP_DigestUpdate(md, line, (size_t)n) != 1 || (size_t)n != strlen(line)) {
            archive_bad(c, "malformed_line");
            rc = -1;
        } else {
            rc = archive_line(c, line, prev, &have_prev);
        }
    }
    if (rc == 0 && (EVP_DigestFinal_ex(md, c->sha256, &mdlen) != 1 || mdlen != CHAIN_HASH_LEN)) {
        archive_bad(c, "internal_error");
        rc = -1;
    }
    if (rc == 0) {
        c->lines++; /* a failure below is at the end of the file */
        memcpy(c->last_hash, prev, CHAIN_HASH_LEN);
        if (c->events_seen != c->events || (c->events > 0 && c->last_seq != c->to_seq)) {
            archive_bad(c, "event_count_mismatch");
            rc = -1;
        } else if (c->events > 0 && c->next_prev != NULL &&
                   CRYPTO_memcmp(prev, c->next_prev, CHAIN_HASH_LEN) != 0) {
            archive_bad(c, "next_link_mismatch");
            rc = -1;
        } else if (c->events > 0 && c->next_prev == NULL && c->last_ckpt_seq != c->to_seq) {
            archive_bad(c, "unanchored_tail"); /* nothing after it: a checkpoint must sign it */
            rc = -1;
        } else {
            c->lines--;
            c->bad_line = 0;
        }
    }
    free(line);
    EVP_MD_CTX_free(md);
    if (f != NULL) {
        fclose(f);
    }
    return rc;
}
