/* LD_PRELOAD shim for wrk (perf/lab, sni and terminate suites): no TLS session resumption.
 *
 * wrk keeps each connection's SSL object across reconnects (SSL_shutdown + SSL_clear keep
 * the session), so with "Connection: close" every new connection offers the previous
 * session and a server with tickets or a session cache resumes it: no certificate
 * signature, no difference between ECDSA and RSA. This shim drops the session before every
 * first SSL_connect of each connection (wrk calls it again while the non-blocking
 * handshake wants to read or write: those calls are left alone), so each connection is a
 * full handshake. Built by perf/lab at run time:
 *   cc -shared -fPIC -O2 -o noresume.so noresume.c -ldl
 * No OpenSSL headers needed: the two functions are looked up by name. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

typedef struct ssl_st SSL;

int SSL_connect(SSL *s) {
    static int (*real_connect)(SSL *);
    static int (*set_session)(SSL *, void *);
    static int (*in_before)(const SSL *);
    if (!real_connect) {  /* a benign race between wrk's threads: same values */
        set_session = (int (*)(SSL *, void *))dlsym(RTLD_NEXT, "SSL_set_session");
        in_before = (int (*)(const SSL *))dlsym(RTLD_NEXT, "SSL_in_before");
        real_connect = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
    }
    if (set_session && in_before && in_before(s)) set_session(s, NULL);
    return real_connect(s);
}
