/* interrupt.c - a flag set by SIGINT/SIGTERM (see interrupt.h). */
#define _POSIX_C_SOURCE 200809L

#include "interrupt.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted = 0;

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
  static const char msg[] =
      "\nbackprop: interrupted; stopping after this epoch (Ctrl-C again to quit at once)\n";
  ssize_t r = write(STDERR_FILENO, msg, sizeof msg - 1); /* async-signal-safe */
  (void)r;
}

static void set_handler(int sig, void (*handler)(int), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = flags;
  sigaction(sig, &sa, NULL);
}

void cli_interrupt_install(void) {
  set_handler(SIGINT, on_signal, SA_RESETHAND | SA_RESTART);
  set_handler(SIGTERM, on_signal, SA_RESETHAND | SA_RESTART);
}

void cli_interrupt_uninstall(void) {
  set_handler(SIGINT, SIG_DFL, 0);
  set_handler(SIGTERM, SIG_DFL, 0);
}

int cli_interrupted(void) { return interrupted != 0; }
