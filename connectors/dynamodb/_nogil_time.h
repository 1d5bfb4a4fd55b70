/* The CPU time a C extension spends with the GIL released, for bench/snapshot_bench.py: the
 * share of the work other threads can run beside it. Included by _transcode.c and _inflate.c;
 * each module keeps its own counter, updated with the GIL held, read by nogil_cpu_ns(). */
#ifndef DDB_NOGIL_TIME_H
#define DDB_NOGIL_TIME_H

#include <Python.h>
#include <time.h>

static long long nogil_cpu_ns_total;

static long long
thread_cpu_ns(void)
{
#if defined(CLOCK_THREAD_CPUTIME_ID)
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0)
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
#endif
    return 0;
}

static PyObject *
nogil_cpu_ns(PyObject *module, PyObject *unused)
{
    return PyLong_FromLongLong(nogil_cpu_ns_total);
}

#endif
