# For CTest, read after the discovered gtest cases of strata_samples_tests (TEST_INCLUDE_FILES,
# tests/samples/CMakeLists.txt): the case that reads the converted CIFAR-10 copy runs after
# the fixture that converts it. Nothing happens when the case was not discovered.
set_tests_properties(Cifar10Files.RealDataHasTheOfficialCountsAndClassBalance PROPERTIES
                     FIXTURES_REQUIRED cifar10_real_data)
