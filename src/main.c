#include "streamseg/streamseg.h"
#include <stdio.h>
int main(int argc, char **argv) {
        printf("streamseg %s\n", sseg_version());
        return 0;
}
