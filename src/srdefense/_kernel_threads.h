/*
 * Threads for srdefense's compiled kernels (_winograd_native.c, _haar_native.c): run one worker
 * function on several threads, each taking tasks from a counter of its own job.
 *
 * Built with OpenMP (Linux), the threads are those of the OpenMP runtime already in the process:
 * PyTorch's own libgomp, which the dynamic linker reuses for the kernels' libgomp.so.1, so its
 * spinning workers and these are the same threads; a pool of their own would compete with them
 * for the cores between PyTorch's operations (measured: the wavelet kernel's 64 photos in
 * 43-45 ms on threads of its own against 32-34 ms on PyTorch's). Without OpenMP, POSIX threads.
 */
#ifndef SRDEFENSE_KERNEL_THREADS_H
#define SRDEFENSE_KERNEL_THREADS_H

#include <pthread.h>

#define KERNEL_MAX_THREADS 256

typedef void *(*kernel_worker)(void *);

/* worker(job) on min(threads, tasks, KERNEL_MAX_THREADS) threads, at least one; returns when
   all are done. A thread that cannot be started leaves its share to the others. */
static void run_workers(kernel_worker worker, void *job, long threads, long tasks) {
    if (threads > tasks) threads = tasks > 0 ? tasks : 1;
    if (threads > KERNEL_MAX_THREADS) threads = KERNEL_MAX_THREADS;
#ifdef _OPENMP
#pragma omp parallel num_threads((int)threads)
    worker(job);
#else
    pthread_t tids[KERNEL_MAX_THREADS];
    long started = 0;
    for (long i = 1; i < threads; i++) {
        if (pthread_create(&tids[started], NULL, worker, job) != 0) break;
        started++;
    }
    worker(job);
    for (long i = 0; i < started; i++) pthread_join(tids[i], NULL);
#endif
}

#endif
