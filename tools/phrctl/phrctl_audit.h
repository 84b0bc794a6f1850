/*
 * phrctl_audit.h - `phrctl audit verify [--from-seq N] [--to-seq M] [--json]`:
 * the offline verification of the audit hash chain and its checkpoint
 * signatures, straight from the audit database (services/audit/chain.h).
 */
#ifndef PHRCTL_AUDIT_H
#define PHRCTL_AUDIT_H

/* |argv| starts after "audit". Exit codes: 0 ok, 1 error, 2 usage, 4 verification failed. */
int phrctl_audit(int argc, char **argv);

#endif
