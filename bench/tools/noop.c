/* the small static binary that forkexec starts */
int main(void) { return 0; }
