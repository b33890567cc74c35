/* rsstrace LOG PROGRAM [ARG...]: runs PROGRAM (and every process it
 * starts) under ptrace and, as each process exits, appends one line
 * "name pid VmHWM_kB RssAnon_kB RssFile_kB parent" to LOG, read from
 * /proc/PID/status at PTRACE_EVENT_EXIT, while its memory is still
 * there: the exact peak resident set of each process, and of its
 * resident set at exit the anonymous (private) part and the part
 * mapped from files (program text and data: page cache, shared by
 * every process that maps the same file).  RssShmem is left out.
 * parent: the name of the traced process that forked it, at the fork
 * ("-" for PROGRAM itself), so that smtpd's broker (an smtpd forked by
 * smtpd) can be told from the session.  Used only for the memory
 * runs of the benchmark (ptrace slows the processes down); exits as
 * PROGRAM does.
 * fds are passed through untouched, so it can sit between tcpserver
 * and smtpd. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

/* pid -> name of its parent at the fork, for the processes alive */
#define NPARENT 4096
static struct { pid_t pid; char name[17]; } parent[NPARENT];

static void forked(pid_t p)
{
  unsigned long msg = 0;
  char path[64], name[17] = "?";
  if (ptrace(PTRACE_GETEVENTMSG, p, 0, &msg) == -1) return;
  snprintf(path, sizeof path, "/proc/%d/comm", (int)p);
  int fd = open(path, O_RDONLY);
  if (fd >= 0) {
    ssize_t n = read(fd, name, sizeof name - 1);
    close(fd);
    if (n > 0) { name[n] = 0; name[strcspn(name, "\n ")] = 0; }
  }
  unsigned i = (unsigned)msg % NPARENT;
  parent[i].pid = (pid_t)msg;
  memcpy(parent[i].name, name, sizeof name);
}

static void record(int logfd, pid_t pid)
{
  char path[64], buf[4096], name[64] = "?", line[256];
  long hwm = -1, anon = -1, file = -1;
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return;
  buf[n] = 0;
  for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
    if (!strncmp(l, "Name:", 5)) sscanf(l + 5, " %63s", name);
    else if (!strncmp(l, "VmHWM:", 6)) hwm = strtol(l + 6, NULL, 10);
    else if (!strncmp(l, "RssAnon:", 8)) anon = strtol(l + 8, NULL, 10);
    else if (!strncmp(l, "RssFile:", 8)) file = strtol(l + 8, NULL, 10);
  }
  if (hwm < 0) return;  /* a thread, or no memory left */
  unsigned i = (unsigned)pid % NPARENT;
  const char *par = parent[i].pid == pid && parent[i].name[0] ? parent[i].name : "-";
  int len = snprintf(line, sizeof line, "%s %d %ld %ld %ld %s\n", name, (int)pid, hwm, anon, file, par);
  if (write(logfd, line, (size_t)len) != len) {}
}

int main(int argc, char **argv)
{
  if (argc < 3) {
    fprintf(stderr, "usage: rsstrace LOG PROGRAM [ARG...]\n");
    return 64;
  }
  int logfd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (logfd < 0) { perror(argv[1]); return 111; }
  pid_t child = fork();
  if (child < 0) { perror("fork"); return 111; }
  if (child == 0) {
    ptrace(PTRACE_TRACEME, 0, 0, 0);
    raise(SIGSTOP);
    execvp(argv[2], argv + 2);
    _exit(127);
  }
  int st, status = 111;
  if (waitpid(child, &st, __WALL) != child) return 111;
  ptrace(PTRACE_SETOPTIONS, child, 0,
         PTRACE_O_TRACEEXIT | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |
         PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL);
  ptrace(PTRACE_CONT, child, 0, 0);
  for (;;) {
    pid_t p = waitpid(-1, &st, __WALL);
    if (p < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
      if (p == child) status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      continue;
    }
    if (!WIFSTOPPED(st)) continue;
    int sig = WSTOPSIG(st), ev = st >> 16;
    if (ev == PTRACE_EVENT_EXIT) record(logfd, p);
    else if (ev == PTRACE_EVENT_FORK || ev == PTRACE_EVENT_VFORK || ev == PTRACE_EVENT_CLONE) forked(p);
    if (ev || sig == SIGTRAP || sig == SIGSTOP) sig = 0;
    ptrace(PTRACE_CONT, p, 0, (void *)(long)sig);
  }
  return status;
}
