"""Student GPTs written as students write them, in four layouts, and each mistake of the catalogue as code."""
